"""The read loop's side: XREADGROUP over every stream served, and acks (``ack.lua``, with the
end-of-job clean-up of the deliveries that have one).

A read asks for at most the worker's free slots in all, shared among the types and a
partitioned type's share among its partitions. A read never spans slots: on a cluster the
streams of several slots are read with one XREADGROUP each, and only when all are empty does
the read block (on each slot, see ``_routing``). A type with level streams (priorities) is read
by one ``read_levels.lua`` call, which asks its levels in order (``streamq/backends/_priority.py``);
a read that blocks watches its level streams with the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as rexc

from streamq.backends._base import AckedRead, Delivery, JobEnd, KeepDone, split_count
from streamq.backends._priority import LevelTurns
from streamq.backends.redis._finished import Refreshes, record_args
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import IdsByStream, StreamKeys
from streamq.backends.redis._replies import as_fields, text
from streamq.backends.redis._routing import is_ask, is_redirect
from streamq.backends.redis._shared import Shared
from streamq.backends.redis._wire import Command

#: The longest a read blocks when some partitions are outside its window (see _read_plan).
_PARTIAL_BLOCK_MS = 100

#: Streams read by one XREADGROUP, and the COUNT for each of them.
ReadGroup = tuple[list[StreamKeys], int]


class Reader:
    """Reads new entries for a consumer, and acknowledges the ones it finished."""

    def __init__(self, shared: Shared, groups: StreamGroups, socket_timeout: float) -> None:
        self._wire = shared.wire
        self._scripts = shared.scripts
        self._groups = groups
        self.group = shared.group
        # A BLOCK as long as the socket timeout would make every idle read look like a dead
        # server; half of it leaves room for the round trip.
        self._longest_block_ms = int(socket_timeout * 500)
        # Where the remainder of a shared count goes next, per "" (types) or type (partitions).
        self._rotation: dict[str, int] = {}
        # Bound once: these run on every read.
        self._send = shared.router.send_to_owners
        self._block_on_each_slot = shared.router.block_on_each_slot
        self._refresh = groups.refresh_partition_counts
        self._streams = shared.keys.streams
        self._levels_of = shared.keys.levels_of
        self._turns = LevelTurns()
        self._refreshes = Refreshes()
        self._ids_by_stream = shared.keys.ids_by_stream
        self._end_keys_by_stream = shared.keys.end_keys_by_stream

    def _read_plan(
        self, types: Sequence[str], count: int, shares: Mapping[str, int] | None = None
    ) -> tuple[list[ReadGroup], bool]:
        """What to read: groups of streams with the COUNT for each stream of the group, never
        more than ``count`` in all; and whether some partition was left out.

        ``count`` is shared among the types, and a partitioned type's share among its
        partitions, the remainders going to a few of them in turn (:func:`split_count`). With
        fewer than one per partition, a window of partitions gets one each, and the window moves
        on at each read. One XREADGROUP reads one group (on a cluster, the groups are also per
        slot). With ``shares`` (a worker with per-type caps), each type's count is its share.
        """
        cluster = self._wire.cluster
        groups: dict[tuple[int, int], list[StreamKeys]] = {}
        partial = False
        if shares is None:
            counts = self._share_out(count, types, "")
        else:
            counts = [shares.get(t, 0) for t in types]
        levelled: list[ReadGroup] = []
        for t, share in zip(types, counts, strict=True):
            streams = self._streams(t)
            if len(streams) > 1 and (levels := self._levels_of(t)) is not None:
                if share:  # one read_levels.lua call (see _read_command)
                    levelled.append((levels, share))
                continue
            partial = partial or share < len(streams)
            for s, n in zip(streams, self._share_out(share, streams, t), strict=True):
                if n:
                    groups.setdefault((s.slot if cluster else 0, n), []).append(s)
        return [(group, n) for (_, n), group in groups.items()] + levelled, partial

    def _share_out(self, count: int, among: Sequence[Any], key: str) -> list[int]:
        """:func:`split_count` over ``among``, the remainder moving on at each call for ``key``
        (``""``: the types of a read; a type: its partitions)."""
        if len(among) == 1:
            return [count]
        at = self._rotation.get(key, 0)
        self._rotation[key] = (at + count % len(among)) % len(among)
        return split_count(count, len(among), at)

    async def read(
        self,
        types: Sequence[str],
        consumer: str,
        count: int,
        block_ms: int,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """XREADGROUP ``>`` over all types at once, asking for at most ``count`` entries in all
        (each type its ``shares``, when given)."""
        block_ms = max(1, min(block_ms, self._longest_block_ms))
        await self._refresh(types)
        plan, partial = self._read_plan(types, count, shares)
        if not plan:  # nothing asked for
            return []
        if partial:
            # Partitions outside this read's window are not watched: look again soon.
            block_ms = min(block_ms, _PARTIAL_BLOCK_MS)
        if len(plan) == 1 and not _is_levels(plan[0][0]):
            ((streams, per),) = plan
            work = [(streams[0].jobs, self._xreadgroup(streams, consumer, per, block_ms))]
            replies = await self._send("reader", work)
            return await self._deliveries(list(zip(plan, replies, strict=True)))
        # Several reads: look at all of them at once; only when all are empty, block.
        found = await self._deliveries(await self._read_without_blocking(plan, consumer), consumer)
        if found:
            return found
        if not self._wire.cluster:
            # One blocking XREADGROUP over every stream: it answers with the stream that gets an
            # entry first, at most the smallest share of it.
            streams = [s for group, _ in plan for s in group]
            per = min(share for _, share in plan)
            work = [(streams[0].jobs, self._xreadgroup(streams, consumer, per, block_ms))]
            (reply,) = await self._send("reader", work)
            return await self._deliveries([((streams, per), reply)])
        # A cluster: block on each slot, and unblock the others as soon as one answers.
        blocking = [
            (g[0].jobs, g[0].slot, self._xreadgroup(g, consumer, per, block_ms)) for g, per in plan
        ]
        replies = await self._block_on_each_slot(blocking)
        asked = [i for i, reply in enumerate(replies) if is_ask(reply)]
        answered = zip(plan, replies, strict=True)
        found = await self._deliveries([read for i, read in enumerate(answered) if i not in asked])
        if asked:
            # A slot being migrated answered ASK at once: its read did not run. Read it where
            # the ASK points (send_to_owners follows ASK with ASKING), without blocking; with
            # nothing there either, pause as a partial read does rather than loop at once.
            again = await self._read_without_blocking([plan[i] for i in asked], consumer)
            found += await self._deliveries(again, consumer)
            if not found:
                await asyncio.sleep(min(block_ms, _PARTIAL_BLOCK_MS) / 1000)
        return found

    async def _read_without_blocking(
        self, plan: list[ReadGroup], consumer: str
    ) -> list[tuple[ReadGroup, Any]]:
        work = [(g[0].jobs, self._read_command(g, consumer, per)) for g, per in plan]
        return list(zip(plan, await self._send("reader", work, whole=True), strict=True))

    async def ack_and_read(
        self,
        acks: Mapping[str, Sequence[str]],
        types: Sequence[str],
        consumer: str,
        count: int,
        ends: Mapping[str, Sequence[JobEnd]] | None = None,
        keep: KeepDone | None = None,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> AckedRead:
        """:meth:`ack` per type, then a :meth:`read` that does not block: one round trip per
        node."""
        await self._refresh(types)
        owners: list[tuple[str, StreamKeys, IdsByStream]] = []
        work: list[tuple[str, Command]] = []
        lost: dict[str, list[str]] = {}
        for t, refs in acks.items():
            located = self._ids_by_stream(t, refs)
            if located.bad:
                lost[t] = list(located.bad)
            of_type = ends.get(t, ()) if ends else ()
            # (ack_done.lua's command finds its own end-of-job keys)
            end_keys = self._end_keys_by_stream(t, of_type) if of_type and keep is None else None
            for s, ids in located.items():
                owners.append((t, s, located))
                found = end_keys.get(s) if end_keys else None
                if keep is None:
                    work.append(self._ack_command(s, consumer, ids, found))
                else:
                    work.append(self._ack_done_command(s, consumer, ids, located, of_type, keep))
        plan, _ = self._read_plan(types, count, shares)
        work += [(g[0].jobs, self._read_command(g, consumer, per)) for g, per in plan]
        replies = await self._send("reader", work, whole=True)
        # The read's entries are ours (in the PEL) whatever happened to the acks: keep them.
        reads = list(zip(plan, replies[len(owners) :], strict=True))
        deliveries = await self._deliveries(reads, consumer)
        failed: dict[str, str] = {}
        for (t, s, located), answer in zip(owners, replies, strict=False):
            if isinstance(answer, BaseException):
                failed[t] = str(self._wire.backend_error(answer))
            else:
                lost.setdefault(t, []).extend(located.ref(s, text(x)) for x in answer)
        return AckedRead(lost, failed, deliveries)

    async def ack(
        self,
        type: str,
        consumer: str,
        entry_ids: Sequence[str],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Ack + delete owned entries (with the end-of-job clean-up of ``ends``, and with
        ``keep`` their records), one script call per stream (all in one exchange per node);
        returns the ids owned by others."""
        located = self._ids_by_stream(type, entry_ids)
        streams = [(s, ids) for s, ids in located.items() if ids]
        if keep is not None:
            work = [
                self._ack_done_command(s, consumer, ids, located, ends, keep) for s, ids in streams
            ]
        else:
            end_keys = self._end_keys_by_stream(type, ends) if ends else {}
            work = [self._ack_command(s, consumer, ids, end_keys.get(s)) for s, ids in streams]
        lost = list(located.bad)
        for (s, _), gone in zip(streams, await self._send("acker", work), strict=True):
            if isinstance(gone, BaseException):
                raise self._wire.backend_error(gone)
            lost += (located.ref(s, text(x)) for x in gone)
        return lost

    def _ack_command(
        self,
        s: StreamKeys,
        consumer: str,
        ids: Sequence[str],
        end_keys: Sequence[tuple[str, str]] | None = None,
    ) -> tuple[str, Command]:
        """The ``ack.lua`` call for ids of one stream, as an item of the router's work; with
        ``end_keys`` ((entry id, key) pairs), those keys are deleted for the entries acked."""
        sha = self._scripts.sha("ack")
        if not end_keys:
            return s.jobs, ("EVALSHA", sha, 2, s.jobs, s.stats, self.group, consumer, *ids)
        return s.jobs, (
            "EVALSHA", sha, 2 + len(end_keys), s.jobs, s.stats, *(k for _, k in end_keys),
            self.group, consumer, *ids, *(i for i, _ in end_keys),
        )  # fmt: skip

    def _ack_done_command(
        self,
        s: StreamKeys,
        consumer: str,
        ids: Sequence[str],
        located: IdsByStream,
        ends: Sequence[JobEnd],
        keep: KeepDone,
    ) -> tuple[str, Command]:
        """The ``ack_done.lua`` call for ids of one stream: the ack with each acked job's
        record (its figures from ``ends``, one per id; an id without one gets no record) and
        the end-of-job keys of those that have one."""
        by_ref = {e.entry_id: e for e in ends}
        of = [by_ref.get(located.ref(s, i)) for i in ids]
        finished = s.finished()
        keep_ms, most, ttl_ms, records = record_args(
            keep, len(self._streams(s.type)), of, self._refreshes.ttl_ms(finished, keep)
        )
        end_keys = [(i, k) for i, e in zip(ids, of, strict=True) if e for k in s.end_keys(e)]
        return s.jobs, (
            "EVALSHA", self._scripts.sha("ack_done"), 4 + len(end_keys),
            s.jobs, s.stats, finished, s.finished_marks(), *(k for _, k in end_keys),
            self.group, consumer, keep_ms, most, ttl_ms, len(ids), *ids, records,
            *(i for i, _ in end_keys),
        )  # fmt: skip

    def _read_command(self, streams: Sequence[StreamKeys], consumer: str, count: int) -> Command:
        """A read of ``streams`` that does not block: XREADGROUP, or ``read_levels.lua`` for
        one type's level streams (the levels owed a turn asked first)."""
        if not _is_levels(streams):
            return self._xreadgroup(streams, consumer, count, 0)
        owe_default, owe_low = self._turns.owed(consumer, streams[0].type, count)
        return (
            "EVALSHA", self._scripts.sha("read_levels"), 3, *(s.jobs for s in streams),
            self.group, consumer, count, owe_default, owe_low,
        )  # fmt: skip

    def _xreadgroup(
        self, streams: Sequence[StreamKeys], consumer: str, count: int, block_ms: int
    ) -> Command:
        block = ("BLOCK", block_ms) if block_ms > 0 else ()
        return (
            "XREADGROUP", "GROUP", self.group, consumer, "COUNT", count, *block,
            "STREAMS", *(s.jobs for s in streams), *(">" for _ in streams),
        )  # fmt: skip

    async def _deliveries(
        self, reads: Sequence[tuple[ReadGroup, Any]], consumer: str = ""
    ) -> list[Delivery]:
        """Deliveries from XREADGROUP replies (RESP2 list or RESP3 map of stream -> entries),
        or from ``read_levels.lua`` (its first element: what its levels gave the owed asks;
        noted for ``consumer``'s next reads)."""
        out: list[Delivery] = []
        errors: list[BaseException] = []
        for (streams, _), reply in reads:
            if isinstance(reply, BaseException):
                if isinstance(reply, rexc.ResponseError) and "NOGROUP" in str(reply):
                    # The server lost the group (restart without persistence): recreate it;
                    # the next read gets what is there.
                    await self._groups.ensure(sorted({s.type for s in streams}))
                elif not is_redirect(reply):  # MOVED: nothing read; the next read asks the owner
                    errors.append(reply)
                continue
            if not reply:
                continue
            if isinstance(reply, list) and isinstance(reply[0], bytes):
                reply = self._note_levels(streams, consumer, reply)
            by_key = {s.jobs.encode(): s for s in streams}
            for key, entries in reply.items() if isinstance(reply, dict) else reply:
                s = by_key[key]
                t, ref = s.type, (None if s.plain else s.ref)
                for entry_id, flat in entries:
                    ident = entry_id.decode()
                    out.append(
                        Delivery(
                            t,
                            ident if ref is None else ref(ident),
                            as_fields(flat) if flat else {},
                            1,
                        )
                    )
        if errors and not out:
            # What other nodes delivered is ours now: return it; the failing node's error
            # comes back on the next read.
            raise self._wire.backend_error(errors[0])
        return out

    def _note_levels(self, streams: Sequence[StreamKeys], consumer: str, reply: list[Any]) -> Any:
        """Note what a ``read_levels.lua`` call says of its levels (``RRR:D:L``) and what each
        gave; returns the rest of its reply (as XREADGROUP's)."""
        head, rest = reply[0], reply[1:]
        flags, owed_default, owed_low = head.split(b":")
        taken = dict.fromkeys((s.jobs.encode() for s in streams), 0)
        for key, entries in rest:
            taken[key] += len(entries)
        self._turns.note(
            consumer,
            streams[0].type,
            [c == 49 for c in flags],
            [0, int(owed_default), int(owed_low)],
            list(taken.values()),
        )
        return rest


def _is_levels(streams: Sequence[StreamKeys]) -> bool:
    """Whether a read group is one type's level streams (high first: ``read_levels.lua``)."""
    return streams[0].level == "high"
