"""Flow control on Redis (docs/flow-control.md): ``admit.lua`` takes a slot of a job's key or
holds the job, ``flow_free.lua`` gives slots back and wakes held jobs, ``flow_refresh.lua``
renews the slots' leases. Every key of a call is in the stream's hash tag (``:flow:*``, see
:meth:`StreamKeys.flow`): one script call per stream, atomic, cluster safe. A partitioned type
keeps its flow-control state per partition: exact when the partition key is the limit's (or
the rate's) key; a type-wide rate is shared out evenly among the partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamq.backends._flow_base import Admission, FlowRule, KeyLoad, Verdict
from streamq.backends._priority import DEFAULT
from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._replies import text
from streamq.backends.redis._shared import Shared
from streamq.backends.redis._wire import Command
from streamq.exceptions import BackendError

#: The connections flow control's script calls are held on (``_routing``).
PURPOSE = "flow"

#: The most key values one :meth:`FlowCalls.wake_held` pass looks at per stream.
WAKE_KEYS = 200


def _shared_tolerance(rule: FlowRule, share: int) -> float:
    """A type-wide rate's burst shared out among ``share`` partitions, each spacing its
    starts ``share`` times wider: each lets ``ceil(burst / share)`` start at once."""
    if share == 1 or not rule.interval_ms:
        return rule.tolerance_ms
    burst = round(rule.tolerance_ms / rule.interval_ms) + 1
    return (-(-burst // share) - 1) * rule.interval_ms * share


def _suffix(s: StreamKeys) -> str:
    """What a stream's ids carry as callers see them (``1700000000000-0@high``)."""
    return s.ref("")


def _mode(a: Admission) -> str:
    rate = "" if a.rate is None else "ra" if a.rate == "" else "r"
    return ("c" if a.key is not None else "") + rate


class FlowCalls:
    """The flow-control calls of the Redis backend, one script call per stream."""

    def __init__(self, shared: Shared, groups: StreamGroups) -> None:
        self._keys = shared.keys
        self._groups = groups
        self._group = shared.group
        self._scripts = shared.scripts
        self._send = shared.router.send_to_owners
        self._wire = shared.wire

    async def admit(self, type: str, asks: Sequence[Admission], rule: FlowRule) -> list[Verdict]:
        """``admit.lua`` per stream, every stream's call in one exchange: see
        :meth:`FlowControl.admit`."""
        by_ref = {a.entry_id: a for a in asks}
        located = self._keys.ids_by_stream(type, list(by_ref))
        verdicts: dict[str, Verdict] = dict.fromkeys(located.bad, "gone")
        # A type-wide rate is shared out among the partitions (each keeps its own): round
        # robin spreads the jobs evenly, so the type's rate holds in sum.
        share = len(self._homes(type))
        sha = self._scripts.sha("admit")
        work: list[tuple[str, Command]] = []
        asked: list[list[str]] = []
        for s, ids in located.items():
            if not ids:
                continue
            keys = [s.jobs, s.stats, s.flow("index"), s.flow("later")]
            args: list[str | int | float] = [
                self._group,
                rule.lease_ms,
                rule.concurrency,
                rule.interval_ms,
                rule.tolerance_ms,
                rule.interval_ms * share,
                _shared_tolerance(rule, share),
            ]
            refs = [located.ref(s, i) for i in ids]
            for ref, plain in zip(refs, ids, strict=True):
                a = by_ref[ref]
                kv = a.key or ""
                keys += [s.flow(f"run:{kv}"), s.flow(f"held:{kv}"), s.flow(f"rate{a.rate or ''}")]
                # The slot's member is the id callers see: a type's levels share the slots.
                args += [plain, ref, kv, _mode(a), a.before]
            work.append((s.jobs, ("EVALSHA", sha, len(keys), *keys, *args)))
            asked.append(refs)
        for refs, answer in zip(asked, await self._exchange(work), strict=True):
            for ref, raw in zip(refs, answer, strict=True):
                word = text(raw)
                verdicts[ref] = word if word in ("run", "wait", "gone") else "later"  # type: ignore[assignment]
        return [verdicts.get(a.entry_id, "gone") for a in asks]

    async def free(self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule) -> int:
        """``flow_free.lua`` per stream, in one exchange: see :meth:`FlowControl.free`."""
        by_stream = self._by_stream_and_key(type, slots)
        work = [self._free_command(type, s, by_key, rule) for s, by_key in by_stream.items()]
        return sum(int(moved) for moved in await self._exchange(work))

    async def _exchange(self, work: list[tuple[str, Command]]) -> list[Any]:
        """The script calls on the hot path's wire (one exchange, each stream's on the node that
        owns it); an error reply raises, after every call has answered."""
        if not work:
            return []
        replies = await self._send(PURPOSE, work, whole=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                if isinstance(reply, BackendError):
                    raise reply
                raise self._wire.backend_error(reply) from reply
        return replies

    def _homes(self, type: str) -> list[StreamKeys]:
        """The streams that hold flow-control keys: each partition's, or the default level's
        (a type's levels share it)."""
        return [s for s in self._keys.streams(type) if s.level == DEFAULT]

    def _free_command(
        self, type: str, s: StreamKeys, by_key: dict[str, list[str]], rule: FlowRule
    ) -> tuple[str, Command]:
        # Where a woken job goes: the stream of its level (its 'priority' field), and the
        # suffix of its id there (``@P``, ``@LEVEL``; none on a plain stream).
        by_level = {x.level: x for x in self._keys.streams(type) if x.part == s.part}
        high, low = by_level.get("high", s), by_level.get("low", s)
        keys = [s.jobs, s.stats, s.flow("index"), high.jobs, low.jobs]
        args: list[str | int] = [rule.lease_ms, rule.concurrency]
        args += [_suffix(x) for x in (s, high, low)]
        for kv, ids in by_key.items():
            keys += [s.flow(f"run:{kv}"), s.flow(f"held:{kv}")]
            args += [kv, len(ids), *ids]
        sha = self._scripts.sha("flow_free")
        return (s.jobs, ("EVALSHA", sha, len(keys), *keys, *args))

    async def refresh_slots(
        self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule
    ) -> None:
        """``flow_refresh.lua`` per stream, in one exchange."""
        sha = self._scripts.sha("flow_refresh")
        work: list[tuple[str, Command]] = []
        for s, by_key in self._by_stream_and_key(type, slots).items():
            keys, ids = [], []
            for kv, entry_ids in by_key.items():
                keys += [s.flow(f"run:{kv}")] * len(entry_ids)
                ids += entry_ids
            work.append((s.jobs, ("EVALSHA", sha, len(keys), *keys, rule.lease_ms, *ids)))
        await self._exchange(work)

    async def wake_held(self, type: str, rule: FlowRule) -> int:
        """Per stream: the key values with jobs held or running (``index``, at most
        :data:`WAKE_KEYS`, the busiest), then ``flow_free.lua`` with no slot to give back."""
        await self._groups.refresh_partition_counts([type])
        work = []
        for s in self._homes(type):
            raw = await self._read("zrevrange", s.flow("index"), 0, WAKE_KEYS - 1)
            if raw:
                work.append(self._free_command(type, s, {text(kv): [] for kv in raw}, rule))
        return sum(int(moved) for moved in await self._exchange(work))

    async def flow_keys(self, type: str, limit: int) -> list[KeyLoad]:
        """The busiest key values over every stream of the type (running and held summed)."""
        await self._groups.refresh_partition_counts([type])
        loads: dict[str, list[int]] = {}
        sec, usec = await self._read("time")
        now_ms = int(sec) * 1000 + int(usec) // 1000
        for s in self._homes(type):
            busiest = [
                text(kv) for kv in await self._read("zrevrange", s.flow("index"), 0, limit - 1)
            ]
            # Slots whose leases ran out (a dead worker's) are not running.
            work: list[tuple[str, Command]] = []
            for kv in busiest:
                work.append((s.jobs, ("ZCOUNT", s.flow(f"run:{kv}"), f"({now_ms}", "+inf")))
                work.append((s.jobs, ("LLEN", s.flow(f"held:{kv}"))))
            counts = await self._exchange(work)
            for i, kv in enumerate(busiest):
                load = loads.setdefault(kv, [0, 0])
                load[0] += int(counts[2 * i])
                load[1] += int(counts[2 * i + 1])
        ranked = sorted(loads.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
        return [KeyLoad(kv, r, w) for kv, (r, w) in ranked[: max(0, limit)]]

    async def _read(self, command: str, *args: Any) -> Any:
        """One read command (a redis-py method's name) on the pool; errors as BackendError."""
        wire = self._wire
        await wire.connect()
        try:
            return await getattr(wire.client, command)(*args)
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc

    def _by_stream_and_key(
        self, type: str, slots: Sequence[tuple[str, str]]
    ) -> dict[StreamKeys, dict[str, list[str]]]:
        """Slots ``(entry_id, key)`` grouped by the stream holding their flow keys (a level
        stream's are its type's default stream's), then key value; ids as callers see them."""
        key_of = dict(slots)
        located = self._keys.ids_by_stream(type, list(key_of))
        homes = {(s.part, s.level): s for s in self._homes(type)}
        out: dict[StreamKeys, dict[str, list[str]]] = {}
        for s, ids in located.items():
            home = homes.get((s.part, DEFAULT), s)
            for plain in ids:
                ref = located.ref(s, plain)
                out.setdefault(home, {}).setdefault(key_of[ref], []).append(ref)
        return out
