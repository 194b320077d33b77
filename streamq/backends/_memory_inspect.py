"""The memory backend's state (its streams under one lock, blocked readers, the worker records)
and its inspection half: stats, pending, dead letters, workers (``memory.py`` has the rest)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streamq.backends._base import (
    F_PRIORITY,
    FRESH_START_DROPS,
    DeadEntry,
    Ended,
    Fields,
    InDead,
    InSchedule,
    InStream,
    JobLocation,
    NotFound,
    PauseRecord,
    PendingEntry,
    RawStats,
    ScheduledEntry,
    StepProgress,
    job_id_of,
)
from streamq.backends._memory_stream import MemoryStream
from streamq.backends._priority import LevelTurns


@dataclass(eq=False, slots=True)
class Waiter:
    """A blocked ``read``: the loop it runs on and the event that wakes it."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    types: frozenset[str]
    closed: bool = False


class MemoryInspection:
    """The memory backend's state, and what the CLI and the dashboard read of it."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._streams: dict[str, MemoryStream] = {}
        self._waiters: set[Waiter] = set()
        self._workers: dict[str, tuple[float, dict[str, str]]] = {}
        self._rotation = 0  # which types get the remainder of the next read's count
        #: per (consumer, type), the turns of the lower priority levels
        self._turns = LevelTurns()
        #: per (type, schedule name), the last tick that fired (epoch ms)
        self._ticks: dict[tuple[str, str], int] = {}
        #: the paused types and their records
        self._paused: dict[str, PauseRecord] = {}
        #: per (type, job id), the step progress and when it expires (monotonic seconds)
        self._progress: dict[tuple[str, str], tuple[StepProgress, float]] = {}
        #: per (type, job id), a cancelled job's record and when it expires (monotonic seconds)
        self._ended: dict[tuple[str, str], tuple[Ended, float]] = {}
        #: per type, the cancel requests of running jobs: job id -> when asked (monotonic s)
        self._cancels: dict[str, dict[str, float]] = {}

    def _stream(self, type: str) -> MemoryStream:
        # Created on first use (caller holds the lock): Redis' XADD creates the stream, and
        # ensure_groups creates the group from id 0, so nothing enqueued earlier is skipped.
        stream = self._streams.get(type)
        if stream is None:
            stream = self._streams[type] = MemoryStream()
        return stream

    def _waiters_for(self, types: Iterable[str]) -> list[Waiter]:
        wanted = set(types)
        return [w for w in self._waiters if not w.types.isdisjoint(wanted)]

    @staticmethod
    def _wake(waiters: Iterable[Waiter]) -> None:
        for waiter in waiters:
            # A closed loop raises RuntimeError: nobody is waiting on it any more.
            with contextlib.suppress(RuntimeError):
                waiter.loop.call_soon_threadsafe(waiter.event.set)

    async def last_ticks(self, type: str, schedules: Sequence[str]) -> dict[str, int | None]:
        """The time of each schedule's last fired tick (None when none fired)."""
        with self._lock:
            return {name: self._ticks.get((type, name)) for name in schedules}

    async def types(self) -> list[str]:
        """Every type this backend has seen (or that is paused), sorted."""
        with self._lock:
            return sorted(self._streams.keys() | self._paused.keys())

    async def pause(self, type: str, reason: str) -> bool:
        """Mark ``type`` paused, unless it is (then its record stays as it was)."""
        with self._lock:
            if type in self._paused:
                return False
            self._paused[type] = PauseRecord(time.time_ns() // 1_000_000, reason)
            return True

    async def resume(self, type: str) -> bool:
        """Clear ``type``'s paused mark; False when it was not paused."""
        with self._lock:
            return self._paused.pop(type, None) is not None

    async def paused(self, types: Sequence[str]) -> dict[str, PauseRecord]:
        """The paused ones of ``types``, with their records."""
        with self._lock:
            return {t: self._paused[t] for t in types if t in self._paused}

    async def stats(self, type: str) -> RawStats:
        """Lengths, PEL summary and counters of one type."""
        with self._lock:
            stream = self._stream(type)
            now = time.monotonic()
            held = dict.fromkeys(stream.consumers, 0)
            for pending in stream.pel.values():
                held[pending.consumer] = held.get(pending.consumer, 0) + 1
            detail = {
                name: (n, max(0, int((now - stream.consumers.get(name, now)) * 1000)))
                for name, n in held.items()
            }
            oldest = next(iter(stream.pel.values()), None)  # the PEL is in id order
            age = None if oldest is None else max(0, time.time_ns() // 1_000_000 - oldest.key[0])
            return RawStats(
                length=len(stream.entries),
                pending=len(stream.pel),
                consumers_detail=detail,
                oldest_pending_age_ms=age,
                dead=len(stream.dead),
                counters=dict(stream.counters),
                consumers=len(stream.consumers),
                scheduled=len(stream.scheduled),
                held=len(stream.later) + sum(map(len, stream.held.values())),
                waiting_by_priority=stream.waiting_by_priority(),
            )

    async def pending(
        self, type: str, *, consumer: str | None, min_idle_ms: int, limit: int
    ) -> list[PendingEntry]:
        """The PEL of one type in id order (optionally one consumer's, or idle that long)."""
        out: list[PendingEntry] = []
        with self._lock:
            stream = self._stream(type)
            now = time.monotonic()
            for entry_id, pending in stream.pel.items():
                if len(out) >= limit:
                    break
                idle = pending.idle_ms(now)
                if (consumer is None or pending.consumer == consumer) and idle >= min_idle_ms:
                    level = stream.entries.get(entry_id, {}).get(F_PRIORITY, b"default")
                    out.append(
                        PendingEntry(
                            entry_id, pending.consumer, idle, pending.deliveries, level.decode()
                        )
                    )
        return out

    async def fetch(self, type: str, entry_ids: Sequence[str]) -> dict[str, Fields]:
        """The fields of live entries, by entry id (missing ids are left out)."""
        with self._lock:
            entries = self._stream(type).entries
            return {i: dict(entries[i]) for i in entry_ids if i in entries}

    async def dead_list(self, type: str, limit: int) -> list[DeadEntry]:
        """Dead-lettered jobs, oldest first."""
        with self._lock:
            return list(self._stream(type).dead.values())[: max(limit, 0)]

    async def dead_retry(self, type: str, dead_ids: Sequence[str]) -> list[str]:
        """Put dead jobs back on the job stream as new entries (a fresh start: no deliveries so
        far, last error or deadline); returns the dead ids re-driven."""
        with self._lock:
            stream = self._stream(type)
            ids = []
            for dead_id in dead_ids:
                entry = stream.dead.pop(dead_id, None)
                if entry is not None:
                    fresh = {k: v for k, v in entry.fields.items() if k not in FRESH_START_DROPS}
                    stream.add(fresh)
                    stream.counters["enqueued"] += 1
                    ids.append(dead_id)
            waiters = self._waiters_for([type]) if ids else []
        self._wake(waiters)
        return ids

    async def dead_purge(self, type: str) -> int:
        """Delete the dead stream; returns how many entries it held."""
        with self._lock:
            dead = self._stream(type).dead
            count = len(dead)
            dead.clear()
            return count

    async def find_job(self, type: str, job_id: str) -> JobLocation:
        """Where the job is: the stream (and the PEL), the schedule, the dead stream, looked
        at under the one lock, so nothing moves meanwhile (the answer is always settled)."""
        with self._lock:
            stream = self._streams.get(type)
            if stream is None:
                return NotFound()
            for entry_id, fields in stream.entries.items():
                if job_id_of(fields) == job_id:
                    p = stream.pel.get(entry_id)
                    pending = None
                    if p is not None:
                        idle = p.idle_ms(time.monotonic())
                        pending = PendingEntry(entry_id, p.consumer, idle, p.deliveries)
                    return InStream(entry_id, dict(fields), pending)
            for due, _order, fields in stream.scheduled:
                if job_id_of(fields) == job_id:
                    now_ms = time.time_ns() // 1_000_000
                    return InSchedule(ScheduledEntry.of(dict(fields), due, now_ms))
            for dead in stream.dead.values():
                if dead.job_id == job_id:
                    return InDead(dead)
            ended = self._ended.get((type, job_id))
            if ended is not None:
                if ended[1] > time.monotonic():
                    return ended[0]
                del self._ended[(type, job_id)]
            done = stream.done_record(job_id)
            if done is not None:
                return done
        return NotFound()

    async def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Record a live worker for ``ttl_s`` seconds."""
        with self._lock:
            self._workers[worker_id] = (time.monotonic() + ttl_s, {**info, "id": worker_id})

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker's heartbeat record (clean shutdown)."""
        with self._lock:
            self._workers.pop(worker_id, None)

    async def workers(self) -> list[dict[str, str]]:
        """Live workers' heartbeat records, by worker id."""
        with self._lock:
            now = time.monotonic()
            for worker_id in [w for w, (expiry, _) in self._workers.items() if expiry <= now]:
                del self._workers[worker_id]
            return [dict(self._workers[w][1]) for w in sorted(self._workers)]

    def delete_entries(self, type: str, entry_ids: Sequence[str]) -> int:
        """XDEL: delete entries from the stream but not the PEL (for fault tests); returns count."""
        with self._lock:
            entries = self._stream(type).entries
            return sum(entries.pop(i, None) is not None for i in entry_ids)

    async def eviction_policy(self) -> str | None:
        """``noeviction``: nothing evicts the memory backend's jobs."""
        return "noeviction"
