"""The memory backend's schedule: delayed jobs and retries per type, moved to their streams when
due."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Sequence

from streamq.backends._base import F_DELIVERIES, F_ERROR, Fields, ScheduledEntry
from streamq.backends._flow_base import F_RATED
from streamq.backends._memory_inspect import MemoryInspection
from streamq.backends._memory_stream import MemoryStream


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MemorySchedule(MemoryInspection):
    """The schedule half of the memory backend: a heap of (due, fields) per type, under the
    backend's one lock."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__()
        self._schedule_order = itertools.count()

    async def schedule_many(self, items: Sequence[tuple[str, Fields]], delay_ms: int) -> None:
        """Put jobs in their types' schedules, due ``delay_ms`` from now; count them enqueued."""
        with self._lock:
            for type, fields in items:
                stream = self._stream(type)
                self._schedule_locked(stream, fields, delay_ms)
                stream.counters["enqueued"] += 1

    def _schedule_locked(self, stream: MemoryStream, fields: Fields, delay_ms: int) -> None:
        """Put one job in ``stream``'s schedule, due ``delay_ms`` from now (lock held)."""
        due = _now_ms() + max(0, delay_ms)
        heapq.heappush(stream.scheduled, (due, next(self._schedule_order), dict(fields)))

    async def fire_tick(self, type: str, schedule: str, tick_ms: int, fields: Fields) -> bool:
        """Append a schedule's tick unless it (or a later one) fired: marker and append under
        the one lock, as the Redis backend does them in one script."""
        with self._lock:
            key = (type, schedule)
            last = self._ticks.get(key)
            if last is not None and last >= tick_ms:
                return False
            self._ticks[key] = tick_ms
            stream = self._stream(type)
            stream.add(fields)
            stream.counters["enqueued"] += 1
            waiters = self._waiters_for((type,))
        self._wake(waiters)
        return True

    async def move_due(self, types: Sequence[str], limit: int) -> int:
        """Append each type's due jobs (at most ``limit`` per type) to its stream."""
        now = _now_ms()
        moved: list[str] = []
        with self._lock:
            for type in dict.fromkeys(types):
                stream = self._streams.get(type)
                if stream is None:
                    continue
                n = 0
                for heap in (stream.scheduled, stream.later):  # later: the rate queue
                    k = 0
                    while heap and heap[0][0] <= now and k < limit:
                        stream.add(heapq.heappop(heap)[2])
                        k += 1
                    n += k
                if n:
                    moved += [type] * n
            waiters = self._waiters_for(moved) if moved else []
        self._wake(waiters)
        return len(moved)

    async def scheduled(self, type: str, limit: int) -> list[ScheduledEntry]:
        """The jobs in the type's schedule, the soonest due first."""
        now = _now_ms()
        with self._lock:
            stream = self._streams.get(type)
            soonest = heapq.nsmallest(max(0, limit), stream.scheduled) if stream else []
        return [ScheduledEntry.of(dict(fields), due, now) for due, _, fields in soonest]

    async def retry_later(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        *,
        delay_ms: int,
        deliveries: int,
        error: str,
    ) -> int:
        """Move an owned failed entry into the type's schedule with its deliveries and error;
        count failed and retried. The due time in ms, or 0 if not owned."""
        due = _now_ms() + max(0, delay_ms)
        with self._lock:
            stream = self._stream(type)
            if stream.owned(entry_id, consumer) is None:
                return 0
            fields = stream.entries.pop(entry_id, None)
            del stream.pel[entry_id]
            if fields is None:
                return 0
            fields = dict(fields)
            fields.pop(F_RATED, None)  # a retry counts against its rate again
            fields[F_DELIVERIES] = str(deliveries).encode()
            fields[F_ERROR] = error.encode()
            heapq.heappush(stream.scheduled, (due, next(self._schedule_order), fields))
            stream.counters["failed"] += 1
            stream.counters["retried"] += 1
        return due
