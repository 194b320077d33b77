"""The memory backend's step progress (docs/steps.md): per (type, job id), what the job's steps
done recorded and when it expires, under the backend's lock, with the Redis backend's checks."""

from __future__ import annotations

import time

from streamq.backends._base import JobEnd, StepProgress
from streamq.backends._memory_inspect import MemoryInspection


class MemoryProgress(MemoryInspection):
    """Recording, reading and ending jobs' step progress."""

    def _end_job(self, type: str, end: JobEnd) -> None:
        """The end-of-job clean-up of one entry (lock held by the caller)."""
        if end.progress:
            self._progress.pop((type, end.job_id), None)

    async def record_progress(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        job_id: str,
        *,
        done: int,
        next_step: str,
        checkpoint: bytes | None,
        ttl_ms: int,
    ) -> bool:
        """Record the steps done by the job of an owned entry (see
        :meth:`Backend.record_progress`)."""
        with self._lock:
            if self._stream(type).owned(entry_id, consumer) is None:
                return False
            key = (type, job_id)
            if checkpoint is None:
                found = self._live_progress(key)
                checkpoint = found.checkpoint if found is not None else b""
            progress = StepProgress(done, next_step, checkpoint, time.time_ns() // 1_000_000)
            self._progress[key] = (progress, time.monotonic() + ttl_ms / 1000)
            return True

    async def job_progress(
        self, type: str, job_id: str, *, entry_id: str | None = None
    ) -> StepProgress | None:
        """The step progress recorded for the job (one stream per type here)."""
        with self._lock:
            return self._live_progress((type, job_id))

    def _live_progress(self, key: tuple[str, str]) -> StepProgress | None:
        """A record that has not expired (lock held); an expired one is dropped."""
        found = self._progress.get(key)
        if found is None:
            return None
        if found[1] <= time.monotonic():
            del self._progress[key]
            return None
        return found[0]
