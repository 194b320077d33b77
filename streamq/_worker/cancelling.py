"""The cancel watcher: a worker running jobs of a type reads that type's cancel requests every
:data:`POLL_EVERY` (docs/control.md), and cancels those of its jobs that are asked for: the
lane running one has its task cancelled (as a time limit does), and a step holding a
:class:`~streamq.JobContext` sees ``ctx.cancelled`` set (what a sync step polls). The runner
turns that into a ``cancelled`` outcome, which the ack batcher ends with
:meth:`~streamq.backends._base.Backend.end_cancelled`: acked, not retried, not dead-lettered.

A worker running nothing polls nothing; one call per type it runs jobs of, per poll.
"""

from __future__ import annotations

from streamq._logging import logger
from streamq._worker.state import WorkerState
from streamq.backends._base import Backend, job_id_of

#: Seconds between two reads of the cancel requests: a running job is cancelled within about
#: this long after ``Queue.cancel`` (plus the time its code takes to reach its next await).
POLL_EVERY = 0.5


class CancelWatcher:
    """Cancels the running jobs of this worker that have a cancel request."""

    def __init__(self, state: WorkerState, backend: Backend) -> None:
        self._state = state
        self._backend = backend

    async def check(self) -> int:
        """Read the requests of the types with running jobs once; cancel those asked for.
        Returns how many it cancelled."""
        by_type = self._state.by_type()
        cancelled = 0
        for type_, runs in by_type.items():
            requests = await self._backend.cancel_requests(type_)
            if not requests:
                continue
            for held in runs:
                if held.lane is None or held.cancel_asked:
                    continue
                if job_id_of(held.delivery.fields) in requests and held.lane.cancel_job():
                    held.cancel_asked = True
                    cancelled += 1
                    logger.info("streamq.job.cancel_requested", **held.log())
        return cancelled

    async def loop(self) -> None:
        """Poll every :data:`POLL_EVERY` until the worker stops; on a server error keep what
        was last read and try again after a backoff."""
        await self._state.poll(POLL_EVERY, self.check, "cancel_check")
