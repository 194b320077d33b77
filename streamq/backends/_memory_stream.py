"""The memory backend's model of one job type: a stream, its consumer group's PEL, the dead
stream and the counters, with the ids Redis would give (``streamq/backends/memory.py`` keeps
them under its lock)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamq.backends._base import (
    COUNTERS,
    F_ID,
    F_PRIORITY,
    F_UNIQUE,
    F_UNIQUE_FOR,
    DeadEntry,
    Ended,
    Fields,
    JobEnd,
    KeepDone,
)
from streamq.exceptions import BackendError

_ParsedId = tuple[int, int]


def parse_id(entry_id: str) -> _ParsedId:
    """Parse ``"ms-seq"`` (or ``"ms"``) into a comparable pair, as Redis does."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise BackendError(f"invalid stream id {entry_id!r}") from None


@dataclass(slots=True)
class PendingRecord:
    """One PEL record: who holds the entry, since when (monotonic), how often delivered."""

    key: _ParsedId
    consumer: str
    since: float
    deliveries: int

    def idle_ms(self, now: float) -> int:
        """Milliseconds since the last delivery or refresh."""
        return max(0, int((now - self.since) * 1000))


@dataclass(slots=True)
class MemoryStream:
    """Everything one job type holds: its stream, group, PEL, dead stream and counters."""

    entries: dict[str, Fields] = field(default_factory=dict)
    # Ids never delivered, oldest first: the group's position is the head of this queue.
    undelivered: deque[str] = field(default_factory=deque)
    # The same for the levels other than default (jobs enqueued with a priority), by name.
    levels: dict[bytes, deque[str]] = field(default_factory=dict)
    # Reads deliver in id order and claims never re-insert, so insertion order is id order.
    pel: dict[str, PendingRecord] = field(default_factory=dict)
    # Consumer -> when it last read or claimed (monotonic), like XINFO CONSUMERS' idle.
    consumers: dict[str, float] = field(default_factory=dict)
    dead: dict[str, DeadEntry] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    # The schedule: a heap of (due ms since the epoch, order of scheduling, fields).
    scheduled: list[tuple[int, int, Fields]] = field(default_factory=list)
    # Unique keys: key -> (the job id holding it, when it expires, monotonic seconds).
    unique: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Finished jobs' records (KeepDone): job id -> (record, when it expires, monotonic
    # seconds), oldest first (a record written again moves to the end, as ZADD moves it).
    done: dict[str, tuple[Ended, float]] = field(default_factory=dict)
    # Flow control (``_memory_flow``): the rate queue, a heap like ``scheduled``; per key
    # value its slots (entry id -> lease expiry, ms since the epoch) and its held jobs; per
    # rate (``""`` the type's, ``":VALUE"`` a key's) its next start (GCRA's TAT, ms).
    later: list[tuple[int, int, Fields]] = field(default_factory=list)
    slots: dict[str, dict[str, float]] = field(default_factory=dict)
    held: dict[str, deque[Fields]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    last_id: _ParsedId = (0, 0)
    last_dead_id: _ParsedId = (0, 0)

    def add(self, fields: Mapping[bytes, bytes]) -> str:
        """Append an entry with a fresh id (XADD ``*``)."""
        self.last_id = next_id(self.last_id)
        entry_id = f"{self.last_id[0]}-{self.last_id[1]}"
        self.entries[entry_id] = dict(fields)
        level = fields.get(F_PRIORITY)
        if level is None:
            self.undelivered.append(entry_id)
        else:
            self.levels.setdefault(level, deque()).append(entry_id)
        return entry_id

    def queue_of(self, entry_id: str) -> deque[str]:
        """The never-delivered queue an entry of this stream waits on (its level's)."""
        level = self.entries.get(entry_id, {}).get(F_PRIORITY)
        return self.undelivered if level is None else self.levels.setdefault(level, deque())

    def waiting_by_priority(self) -> dict[str, int]:
        """Per level, the entries waiting (empty when no job of the type had a priority)."""
        if not self.levels:
            return {}
        entries = self.entries
        out = {"high": 0, "default": sum(1 for i in self.undelivered if i in entries), "low": 0}
        for name, queue in self.levels.items():
            out[name.decode()] = sum(1 for i in queue if i in entries)
        return out

    def new_dead_id(self) -> str:
        """A fresh id on the dead stream."""
        self.last_dead_id = next_id(self.last_dead_id)
        return f"{self.last_dead_id[0]}-{self.last_dead_id[1]}"

    def unique_holder(self, key: str) -> str | None:
        """The job id holding ``key`` (an expired key holds nothing, as in Redis)."""
        held = self.unique.get(key)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self.unique[key]
            return None
        return held[0]

    def release_unique(self, fields: Mapping[bytes, bytes]) -> None:
        """A unique job ended: free its key, or keep it ``unique_for`` more, if it still
        names this job (as ``unique_release.lua``)."""
        raw = fields.get(F_UNIQUE)
        if raw is None:
            return
        key = raw.decode()
        job_id = fields.get(F_ID, b"").decode()
        if self.unique_holder(key) != job_id:
            return
        try:
            keep_ms = int(fields.get(F_UNIQUE_FOR, b"0"))
        except ValueError:
            keep_ms = 0
        if keep_ms > 0:
            self.unique[key] = (job_id, time.monotonic() + keep_ms / 1000)
        else:
            del self.unique[key]

    def record_done(self, end: JobEnd, consumer: str, keep: KeepDone) -> None:
        """Write a finished job's record and drop those expired or beyond ``keep.most`` (as
        ``done_record.lua``)."""
        now = time.monotonic()
        done = self.done
        done.pop(end.job_id, None)
        at_ms = time.time_ns() // 1_000_000
        done[end.job_id] = (
            Ended("done", at_ms, end.took_ms, end.deliveries, consumer),
            now + keep.ms / 1000,
        )
        while done:
            oldest = next(iter(done))
            if len(done) <= keep.most and done[oldest][1] > now:
                break
            del done[oldest]

    def done_record(self, job_id: str) -> Ended | None:
        """A finished job's record, unless it expired."""
        found = self.done.get(job_id)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def owned(self, entry_id: str, consumer: str) -> PendingRecord | None:
        """The PEL record of ``entry_id`` if ``consumer`` holds it."""
        pending = self.pel.get(entry_id)
        return pending if pending is not None and pending.consumer == consumer else None


def next_id(last: _ParsedId) -> _ParsedId:
    """The id Redis would give the next entry: current ms, or the last ms with seq + 1."""
    ms = time.time_ns() // 1_000_000
    return (ms, 0) if ms > last[0] else (last[0], last[1] + 1)
