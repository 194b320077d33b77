"""Delayed jobs on Redis: a sorted set per stream (``{prefix}:{TAG}:scheduled``, in the stream's
slot), due time in ms as the score, each member an entry's fields packed so that
``move_due.lua`` can XADD them unchanged. A failed job waiting for its retry is a member too
(``retry.lua`` moves it there from the stream, its deliveries and last error added to it).

A member is a tag unique to the job's enqueue, then the entry's fields and values in turn, each
as ``<length>:<bytes>``: nothing to execute on decode, and Lua reads it with ``string.find`` and
``string.sub``. The tag keeps two enqueues of the very same job (a caller-given id) two jobs, as
they are in a stream; a sorted set would otherwise keep one member. Both scripts read
the server's clock (``TIME``), so the clocks of producers and workers do not matter.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from streamq.backends._base import Fields, ScheduledEntry
from streamq.backends._priority import DEFAULT
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._producer import Producer
from streamq.backends.redis._shared import Shared

#: The schedule's connection, held like the producer's and the reader's.
PURPOSE = "schedule"


def pack_fields(tag: bytes, fields: Fields) -> bytes:
    """One schedule member: ``tag``, then every field and value, each as ``<length>:<bytes>``."""
    return b"%d:%b" % (len(tag), tag) + b"".join(
        b"%d:%b" % (len(x), x) for kv in fields.items() for x in kv
    )


def unpack_fields(member: bytes) -> Fields:
    """The fields of a schedule member (:func:`pack_fields` undone, the tag dropped)."""
    parts: list[bytes] = []
    pos = 0
    while pos < len(member):
        colon = member.index(b":", pos)
        n = int(member[pos:colon])
        parts.append(member[colon + 1 : colon + 1 + n])
        pos = colon + 1 + n
    return dict(zip(parts[1::2], parts[2::2], strict=True))


class Scheduler:
    """Puts delayed jobs in their streams' schedules and moves the due ones into the streams."""

    def __init__(self, shared: Shared, groups: StreamGroups, producer: Producer) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._scripts = shared.scripts
        self._router = shared.router
        self._groups = groups
        self._producer = producer

    async def schedule_many(self, items: Sequence[tuple[str, Fields]], delay_ms: int) -> None:
        """Each job in the schedule of the stream it would go to now (the same partition),
        one script call per stream, one round trip per node."""
        if not items:
            return
        by_stream = await self._producer.streams_for(items)
        sha = self._scripts.sha("schedule")
        call_tag = os.urandom(8).hex().encode()

        def pack(i: int) -> bytes:
            return pack_fields(b"%b-%d" % (call_tag, i), items[i][1])

        delay = max(0, int(delay_ms))
        work = [
            (
                s.jobs,
                ("EVALSHA", sha, 2, s.scheduled, s.stats, delay, *(pack(i) for i in idx)),
            )
            for s, idx in by_stream.items()
        ]
        producer = self._producer
        replies = await self._router.send_to_owners(
            PURPOSE, work, wait=producer.wait_replicas, whole=True
        )
        failed = [r for r in replies if isinstance(r, BaseException)]
        if failed:
            written = sum(
                len(idx)
                for idx, reply in zip(by_stream.values(), replies, strict=True)
                if not isinstance(reply, BaseException)
            )
            raise producer.partly_written(failed[0], written, len(items))

    async def move_due(self, types: Sequence[str], limit: int) -> int:
        """``move_due.lua`` on every stream of ``types``: one script call per stream."""
        await self._groups.refresh_partition_counts(types)
        sha = self._scripts.sha("move_due")
        work: list[tuple[str, tuple[str | int, ...]]] = []
        for t in types:
            streams = self._keys.streams(t)
            levels = {s.level: s.jobs for s in streams if s.part is None}
            for s in streams:
                if s.level != DEFAULT:  # its type's rate queue is moved with the default stream
                    work.append((s.jobs, ("EVALSHA", sha, 2, s.scheduled, s.jobs, limit)))
                    continue
                high, low = levels.get("high", s.jobs), levels.get("low", s.jobs)
                keys = (s.scheduled, s.jobs, s.flow("later"), high, low)
                work.append((s.jobs, ("EVALSHA", sha, 5, *keys, limit)))
        replies = await self._router.send_to_owners(PURPOSE, work, whole=True)
        moved = 0
        error: BaseException | None = None
        for reply in replies:
            if isinstance(reply, BaseException):
                error = reply
            else:
                moved += int(reply)
        if error is not None and not moved:
            raise self._wire.backend_error(error)
        return moved

    async def scheduled(self, type: str, limit: int) -> list[ScheduledEntry]:
        """The soonest ``limit`` jobs over the type's schedules (partitions merged)."""
        if limit < 1:
            return []
        await self._groups.refresh_partition_counts([type])
        call = self._scripts.call
        answers = await asyncio.gather(
            *(call("list_scheduled", [s.scheduled], [limit]) for s in self._keys.streams(type))
        )
        out: list[ScheduledEntry] = []
        for now_ms, *rows in answers:
            for member, score in zip(rows[::2], rows[1::2], strict=True):
                fields = unpack_fields(member)
                due = int(score)
                out.append(ScheduledEntry.of(fields, due, int(now_ms)))
        out.sort(key=lambda e: e.due_ms)
        return out[:limit]
