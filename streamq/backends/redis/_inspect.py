"""Inspection and administration: what the CLI and the dashboard read (stats, pending entries,
fields, dead letters, types, workers, the eviction policy) and the few changes they make (re-drive
or purge dead letters, requeue stuck entries, the workers registry). These are rare calls: they
go through redis-py's own pipelines on the pool, no connection is held for them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as rexc

from streamq.backends._base import COUNTERS, DeadEntry, Fields, PendingEntry, RawStats, job_id_of
from streamq.backends._priority import DEFAULT, PRIORITIES
from streamq.backends.redis import _partitions
from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._replies import age_ms, as_fields, entry_id_order, text
from streamq.backends.redis._shared import Shared

#: The key names (after the hash tag) that show a type exists.
_TYPE_KEYS = ("jobs", "dead", "stats", "scheduled", "paused", "high:jobs", "low:jobs")


def dead_entry(s: StreamKeys, dead_id: bytes, raw: Fields) -> DeadEntry:
    """One entry of the dead stream of ``s``: the job's fields (``f.``) and why it died."""
    meta = {text(k): v for k, v in raw.items() if not k.startswith(b"f.")}
    fields = {k[2:]: v for k, v in raw.items() if k.startswith(b"f.")}
    return DeadEntry(
        dead_id=s.ref(text(dead_id)),
        job_id=job_id_of(fields),
        reason=text(meta.get("reason", b"")),
        error=text(meta.get("error", b"")),
        deliveries=int(meta.get("deliveries", b"0")),
        entry_id=text(meta.get("entry_id", b"")),
        dead_at=float(meta.get("dead_at", b"0")),
        fields=fields,
    )


class Inspector:
    """Reads (and tidies) what the server holds for the types and workers of one prefix."""

    def __init__(self, shared: Shared, groups: StreamGroups) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._call = shared.scripts.call
        self._router = shared.router
        self._refresh = groups.refresh_partition_counts
        self.group = shared.group

    async def stats(self, type: str) -> RawStats:
        """Lengths, PEL summary, consumers and counters: one pipelined round trip per stream,
        summed over the partitions."""
        await self._refresh([type])
        streams = self._keys.streams(type)
        parts = await asyncio.gather(*(self._stream_stats(s) for s in streams))
        if len(parts) == 1:
            return parts[0]
        by_level: dict[str, int] = {}
        if self._keys.has_levels(type):
            for s, raw in zip(streams, parts, strict=True):
                by_level[s.level] = by_level.get(s.level, 0) + max(0, raw.length - raw.pending)
        detail: dict[str, tuple[int, int]] = {}
        counters = dict.fromkeys(COUNTERS, 0)
        for raw in parts:
            for name, (held, idle) in raw.consumers_detail.items():
                before = detail.get(name)
                detail[name] = (
                    (held, idle) if before is None else (before[0] + held, min(before[1], idle))
                )
            for k, v in raw.counters.items():
                counters[k] = counters.get(k, 0) + v
        ages = [r.oldest_pending_age_ms for r in parts if r.oldest_pending_age_ms is not None]
        return RawStats(
            length=sum(r.length for r in parts),
            pending=sum(r.pending for r in parts),
            consumers_detail=detail,
            oldest_pending_age_ms=max(ages) if ages else None,
            dead=sum(r.dead for r in parts),
            counters=counters,
            consumers=len(detail),
            scheduled=sum(r.scheduled for r in parts),
            held=max(0, sum(r.held for r in parts)),
            waiting_by_priority={k: by_level[k] for k in PRIORITIES if k in by_level},
        )

    async def _stream_stats(self, s: StreamKeys) -> RawStats:
        wire = self._wire
        await wire.connect()
        try:
            async with wire.client.pipeline(transaction=False) as pipe:
                pipe.xlen(s.jobs)
                pipe.xlen(s.dead)
                pipe.hgetall(s.stats)
                pipe.execute_command("TIME")
                pipe.execute_command("XPENDING", s.jobs, self.group)
                pipe.execute_command("XINFO", "CONSUMERS", s.jobs, self.group)
                pipe.zcard(s.scheduled)
                pipe.zcard(s.flow("later"))
                replies = await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc
        for r in (*replies[:4], *replies[6:]):
            if isinstance(r, rexc.RedisError):
                raise wire.backend_error(r) from r
        length, dead, counters_raw, (sec, usec), summary, consumers, scheduled, later = replies
        if isinstance(summary, rexc.ResponseError) and "NOGROUP" in str(summary):
            # No group yet (nothing consumed so far): the PEL is empty, not an error.
            summary, consumers = None, []
        for r in (summary, consumers):
            if isinstance(r, rexc.RedisError):  # refused (an ACL), or anything else: say so
                raise wire.backend_error(r) from r
        now_ms = int(sec) * 1000 + int(usec) // 1000
        counters = dict.fromkeys(COUNTERS, 0)
        for k, v in counters_raw.items():
            counters[text(k)] = int(v)
        # Held for a key's slot (admit.lua counts them), or for a start in the rate queue.
        # A type's levels share one rate queue: counted with the default stream.
        later = int(later) if s.level == DEFAULT else 0
        held = counters.pop("held", 0) + later
        pending = 0
        oldest: int | None = None
        if summary and int(summary[0]) > 0:
            pending = int(summary[0])
            oldest = age_ms(text(summary[1]), now_ms)
        detail: dict[str, tuple[int, int]] = {}
        for c in consumers:
            info = {
                text(k): v for k, v in (c.items() if isinstance(c, dict) else as_fields(c).items())
            }
            detail[text(info["name"])] = (int(info["pending"]), int(info["idle"]))
        return RawStats(
            length=int(length),
            pending=pending,
            consumers_detail=detail,
            oldest_pending_age_ms=oldest,
            dead=int(dead),
            counters=counters,
            consumers=len(detail),
            scheduled=int(scheduled),
            held=held,
        )

    async def pending(
        self, type: str, *, consumer: str | None, min_idle_ms: int, limit: int
    ) -> list[PendingEntry]:
        """XPENDING (extended form), optionally for one consumer or entries idle that long;
        oldest entries first, over all partitions."""
        await self._refresh([type])
        wire = self._wire
        out: list[PendingEntry] = []
        streams = self._keys.streams(type)
        for s in streams:
            args: list[Any] = ["XPENDING", s.jobs, self.group]
            if min_idle_ms > 0:
                args += ["IDLE", min_idle_ms]
            args += ["-", "+", limit]
            if consumer:
                args.append(consumer)
            try:
                rows = await wire.client.execute_command(*args)
            except rexc.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    continue
                raise wire.backend_error(exc) from exc
            except REDIS_ERRORS as exc:
                raise wire.backend_error(exc) from exc
            out += (
                PendingEntry(s.ref(text(r[0])), text(r[1]), int(r[2]), int(r[3]), s.level)
                for r in rows
            )
        if len(streams) > 1:
            out.sort(key=lambda e: entry_id_order(e.entry_id))
        return out[:limit]

    async def fetch(self, type: str, entry_ids: Sequence[str]) -> dict[str, Fields]:
        """Fields of live entries (one pipelined XRANGE each)."""
        await self._refresh([type])
        wire = self._wire
        out: dict[str, Fields] = {}
        located = self._keys.checked_ids_by_stream(type, entry_ids)
        for s, ids in located.items():
            if not ids:
                continue
            try:
                async with wire.client.pipeline(transaction=False) as pipe:
                    for i in ids:
                        pipe.xrange(s.jobs, i, i)
                    replies = await pipe.execute()
            except REDIS_ERRORS as exc:
                raise wire.backend_error(exc) from exc
            out.update((located.ref(s, i), r[0][1]) for i, r in zip(ids, replies, strict=True) if r)
        return out

    async def requeue(self, type: str, entry_ids: Sequence[str], min_idle_ms: int) -> list[str]:
        """Move stuck entries to the end of the stream as new ones (one script call each
        stream)."""
        await self._refresh([type])
        moved: list[str] = []
        located = self._keys.checked_ids_by_stream(type, entry_ids)
        for s, ids in located.items():
            if ids:
                pairs = await self._call("requeue", [s.jobs], [self.group, min_idle_ms, *ids])
                moved += (located.ref(s, text(old)) for old, _new in pairs)
        return moved

    async def types(self) -> list[str]:
        """SCAN for ``{prefix}:{TYPE}:*`` keys (never KEYS: it blocks the server); on a cluster,
        on every master. A paused type is listed even before it has a stream."""
        wire = self._wire
        await wire.connect()
        prefix = self._keys.prefix
        found: set[str] = set()
        pattern = f"{prefix}:{{*}}:*"
        start = len(prefix) + 2
        try:
            async for key in wire.client.scan_iter(match=pattern, count=1000):
                name = text(key)
                end = name.find("}:", start)
                if end > 0 and name[end + 2 :] in _TYPE_KEYS:
                    found.add(_partitions.type_of_tag(name[start:end]))
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc
        return sorted(found)

    # dead letters -------------------------------------------------------------------------

    async def dead_list(self, type: str, limit: int) -> list[DeadEntry]:
        """The oldest ``limit`` dead letters (over all partitions)."""
        await self._refresh([type])
        wire = self._wire
        out: list[DeadEntry] = []
        streams = self._keys.streams(type)
        for s in streams:
            try:
                rows = await wire.client.xrange(s.dead, "-", "+", count=limit)
            except REDIS_ERRORS as exc:
                raise wire.backend_error(exc) from exc
            out += (dead_entry(s, dead_id, raw) for dead_id, raw in rows)
        if len(streams) > 1:
            out.sort(key=lambda d: entry_id_order(d.dead_id))
        return out[:limit]

    async def dead_retry(self, type: str, dead_ids: Sequence[str]) -> list[str]:
        """Re-drive dead letters as new entries (one script call each); returns the dead ids
        re-driven (not those already gone)."""
        await self._refresh([type])
        out = []
        for s, ids in self._keys.checked_ids_by_stream(type, dead_ids).items():
            for d in ids:
                if await self._call("redrive", [s.jobs, s.dead, s.stats], [d]):
                    out.append(s.ref(d))
        return out

    async def dead_purge(self, type: str) -> int:
        """Drop the dead stream(s); returns how many entries they held."""
        await self._refresh([type])
        n = 0
        for s in self._keys.streams(type):
            n += int(await self._call("purge", [s.dead], []))
        return n

    # workers ------------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Write the worker's record with a TTL and list it in the workers set."""
        wire = self._wire
        await wire.connect()
        key = self._keys.worker_key(worker_id)
        try:
            async with wire.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=dict(info))
                pipe.pexpire(key, max(1, int(ttl_s * 1000)))
                pipe.sadd(self._keys.workers_key, worker_id)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc

    async def remove_worker(self, worker_id: str) -> None:
        """Delete the worker's record."""
        wire = self._wire
        await wire.connect()
        try:
            async with wire.client.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.worker_key(worker_id))
                pipe.srem(self._keys.workers_key, worker_id)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc

    async def workers(self) -> list[dict[str, str]]:
        """Records of workers whose heartbeat has not expired (expired ones are forgotten)."""
        wire = self._wire
        await wire.connect()
        members_key = self._keys.workers_key
        try:
            ids = sorted(text(m) for m in await wire.client.smembers(members_key))
            async with wire.client.pipeline(transaction=False) as pipe:
                for w in ids:
                    pipe.hgetall(self._keys.worker_key(w))
                records = await pipe.execute()
            out, gone = [], []
            for w, rec in zip(ids, records, strict=True):
                if rec:
                    out.append({"id": w} | {text(k): text(v) for k, v in rec.items()})
                else:
                    gone.append(w)
            if gone:
                await wire.client.srem(members_key, *gone)
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc
        return out

    async def eviction_policy(self) -> str | None:
        """``CONFIG GET maxmemory-policy`` (on a cluster, of every master): the first policy
        other than ``noeviction`` found, else ``noeviction``; None when a server refuses the
        command (an ACL without ``+config|get``, or a managed service that renamed it)."""
        policy = "noeviction"
        for reply in await self._router.on_every_master("CONFIG", "GET", "maxmemory-policy"):
            if isinstance(reply, rexc.ResponseError) or not reply:
                return None
            found = text(next(iter(reply.values())))
            if found != "noeviction":
                policy = found
        return policy
