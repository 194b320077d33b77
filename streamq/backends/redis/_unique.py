"""Unique jobs on Redis: the key that holds a unique key's job id (``{prefix}:{TAG}:unique:KEY``,
in the stream's slot), taken with the job's write (``unique.lua``) and released with its end
(``finish.lua`` for an ack, ``dead.lua`` for a dead letter; the shared release is
``unique_release.lua``). A retry (``retry.lua``) keeps it: the job has not ended.

On a partitioned type the job goes to the partition of its partition key, or, with round
robin, of its unique key (``_keys.stream_for_new_job``), and the key lives in that partition's
slot: the next enqueue of the key looks where the holder is.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamq.backends._base import F_ID, F_UNIQUE, Fields, JobEnd, KeepDone
from streamq.backends.redis._finished import Refreshes, record_args
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._producer import Producer
from streamq.backends.redis._replies import text
from streamq.backends.redis._shared import Shared

#: The connection the unique enqueues go on (the producer's).
PURPOSE = "producer"


def unique_key_of(s: StreamKeys, fields: Fields) -> str | None:
    """The key a job's unique key is held under, or None for a job without one."""
    raw = fields.get(F_UNIQUE)
    return None if raw is None else s.unique(raw.decode())


class UniqueJobs:
    """Enqueues unique jobs and ends them (the ack that releases the key)."""

    def __init__(self, shared: Shared, groups: StreamGroups, producer: Producer) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._scripts = shared.scripts
        self._router = shared.router
        self._groups = groups
        self._producer = producer
        self.group = shared.group
        self._refreshes = Refreshes()

    async def enqueue_unique(
        self, type: str, fields: Fields, key: str, *, delay_ms: int, ttl_ms: int
    ) -> tuple[str, bool]:
        """See :meth:`Backend.enqueue_unique`: one ``unique.lua`` call on the stream's node."""
        (s,) = await self._producer.streams_for([(type, fields)])
        sha = self._scripts.sha("unique")
        args = [x for kv in fields.items() for x in kv]
        command = (
            "EVALSHA",
            sha,
            4,
            s.jobs,
            s.scheduled,
            s.stats,
            s.unique(key),
            fields[F_ID],
            max(1, int(ttl_ms)),
            max(0, int(delay_ms)),
            *args,
        )
        (reply,) = await self._router.send_to_owners(
            PURPOSE, [(s.jobs, command)], wait=self._producer.wait_replicas, whole=True
        )
        if isinstance(reply, BaseException):
            raise self._wire.backend_error(reply)
        created, holder = reply
        return text(holder), int(created) == 1

    async def finish(
        self,
        type: str,
        consumer: str,
        jobs: Sequence[tuple[str, Fields]],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Ack owned unique jobs and release their keys: one ``finish.lua`` call per stream,
        with the end-of-job keys of ``ends`` (one per job, or none) and, with ``keep``, their
        records. Returns the entry ids no longer owned."""
        by_id = dict(jobs)
        end_of = {e.entry_id: e for e in ends}
        located = self._keys.ids_by_stream(type, list(by_id))
        lost = list(located.bad)
        streams = self._keys.streams(type)
        for s, ids in located.items():
            if not ids:
                continue
            keys = [s.jobs, s.stats]
            args: list[str | int] = [self.group, consumer, 0, 0, 0, len(ids), *ids]
            if keep is not None:
                finished = s.finished()
                keys += [finished, s.finished_marks()]
                of = [end_of.get(located.ref(s, i)) for i in ids]
                ttl_ms = self._refreshes.ttl_ms(finished, keep)
                keep_ms, most, ttl_ms, records = record_args(keep, len(streams), of, ttl_ms)
                args[2:5] = [keep_ms, most, ttl_ms]
                args.append(records)
            for plain in ids:
                key = unique_key_of(s, by_id[located.ref(s, plain)])
                keys.append(key if key is not None else s.unique(""))
            if any(e.progress for e in ends):
                # One end-of-job key per id, in the same order (a job without one gets a key
                # that does not exist, in the same slot: its DEL does nothing).
                for plain in ids:
                    end = end_of.get(located.ref(s, plain))
                    found = s.end_keys(end) if end is not None else []
                    keys.append(found[0] if found else s.progress(""))
            gone = await self._scripts.call("finish", keys, args)
            lost += (located.ref(s, text(x)) for x in gone)
        return lost
