"""The memory backend's cancellation (docs/control.md): a scheduled or waiting job removed at
once, a running one's cancel request kept for its worker, a cancelled job's record kept
:data:`~streamq.backends._base.ENDED_KEEP_MS` — under the backend's lock, as ``cancel.lua``."""

from __future__ import annotations

import heapq
import time

from streamq.backends._base import (
    CANCEL_KEEP_MS,
    ENDED_KEEP_MS,
    F_UNIQUE_FOR,
    CancelResult,
    Ended,
    Fields,
    JobEnd,
    job_id_of,
)
from streamq.backends._memory_progress import MemoryProgress
from streamq.backends._memory_stream import MemoryStream


class MemoryCancel(MemoryProgress):
    """Cancelling jobs, their cancel requests, and their records."""

    async def cancel(self, type: str, job_id: str) -> CancelResult:
        """See :meth:`Backend.cancel`."""
        with self._lock:
            stream = self._streams.get(type)
            if stream is None:
                return self._not_there(type, job_id)
            for entry_id, fields in stream.entries.items():
                if job_id_of(fields) != job_id:
                    continue
                pending = stream.pel.get(entry_id)
                if pending is not None:
                    self._cancels.setdefault(type, {})[job_id] = time.monotonic()
                    return CancelResult("cancelling", consumer=pending.consumer)
                stream.queue_of(entry_id).remove(entry_id)
                del stream.entries[entry_id]
                self._cancelled(type, stream, job_id, fields)
                return CancelResult("cancelled")
            for i, (_due, _order, fields) in enumerate(stream.scheduled):
                if job_id_of(fields) == job_id:
                    stream.scheduled.pop(i)
                    heapq.heapify(stream.scheduled)
                    self._cancelled(type, stream, job_id, fields)
                    return CancelResult("cancelled")
            if any(dead.job_id == job_id for dead in stream.dead.values()):
                return CancelResult("dead")
            return self._not_there(type, job_id)

    def _not_there(self, type: str, job_id: str) -> CancelResult:
        ended = self._ended.get((type, job_id))
        if ended is not None and ended[1] > time.monotonic():
            return CancelResult("cancelled", already=True)
        stream = self._streams.get(type)
        if stream is not None and stream.done_record(job_id) is not None:
            return CancelResult("done")
        return CancelResult("unknown")

    def _cancelled(self, type: str, stream: MemoryStream, job_id: str, fields: Fields) -> None:
        """The end of a cancelled job (lock held): its unique key released at once (not kept
        ``unique_for``), its progress and request gone, counted and recorded."""
        stream.release_unique({k: v for k, v in fields.items() if k != F_UNIQUE_FOR})
        self._progress.pop((type, job_id), None)
        self._cancels.get(type, {}).pop(job_id, None)
        stream.counters["cancelled"] += 1
        ended = Ended("cancelled", time.time_ns() // 1_000_000)
        self._ended[(type, job_id)] = (ended, time.monotonic() + ENDED_KEEP_MS / 1000)

    async def cancel_requests(self, type: str) -> set[str]:
        """See :meth:`Backend.cancel_requests`."""
        with self._lock:
            requests = self._cancels.get(type)
            if not requests:
                return set()
            oldest = time.monotonic() - CANCEL_KEEP_MS / 1000
            for job_id in [j for j, at in requests.items() if at < oldest]:
                del requests[job_id]
            return set(requests)

    async def end_cancelled(
        self, type: str, consumer: str, entry_id: str, fields: Fields, end: JobEnd | None = None
    ) -> bool:
        """See :meth:`Backend.end_cancelled`."""
        with self._lock:
            stream = self._stream(type)
            if stream.owned(entry_id, consumer) is None:
                return False
            del stream.pel[entry_id]
            stored = stream.entries.pop(entry_id, None) or dict(fields)
            self._cancelled(type, stream, job_id_of(stored) or "", stored)
            return True
