"""Step progress: a job with several steps records each step it finished, so that a retry or a
redelivery starts at the first step not done, with the checkpoint the steps done saved.

The records go through the ``Backend`` (``record_progress``, ``job_progress``); which step runs
when is :mod:`~streamq._worker.steps`'. A record is made after each step but the last (the ack
ends the job, and deletes the record with it: :class:`~streamq.backends._base.JobEnd`), only
while this worker still owns the entry. A delivery looks for a record only when the job may have
run before: its delivery count is over 1 (a retry's count goes on from the deliveries before
it), or a recovery pass claimed it (a shutdown hand-back takes its delivery back, so such a
claim can count 1). A first delivery has nothing to find, and costs no round trip for it.
See docs/steps.md.
"""

from __future__ import annotations

from typing import Any

from streamq._context import JobContext
from streamq._job import Job
from streamq._logging import logger
from streamq._registry import JobType
from streamq.backends._base import Backend, Delivery
from streamq.exceptions import BackendError, Retry

#: How long a record outlives its last write when its job vanished without an end (an entry
#: deleted by hand, a stream dropped): a week, far longer than any retry waits by default (the
#: backoff's cap, ``retry_max``, is an hour). A job whose retry waits longer than this starts
#: again at its first step.
PROGRESS_TTL_MS = 7 * 24 * 3600 * 1000


class StepLeaseLost(Exception):
    """The entry is another consumer's now (found when recording a step): stop the steps."""


class ProgressKeeper:
    """Reads and records the step progress of one worker's deliveries."""

    def __init__(self, backend: Backend, consumer: str) -> None:
        self._backend = backend
        self._consumer = consumer

    async def resume(
        self, d: Delivery, job: Job[Any], job_type: JobType, ctx: JobContext[Any]
    ) -> int:
        """The step this delivery starts at (0 unless an earlier one recorded steps done), the
        checkpoint read into ``ctx``. A record this type's steps do not match (the type changed
        since) or whose checkpoint no longer decodes is set aside with a warning: the job
        starts again at its first step (steps are idempotent), and its first record replaces
        it. A failed read is a :class:`Retry`: no step has run, and none is run twice."""
        try:
            found = await self._backend.job_progress(d.type, job.id or "", entry_id=d.entry_id)
        except BackendError as exc:
            raise Retry(reason=f"the job's step progress could not be read: {exc}") from exc
        if found is None:
            return 0
        names = job_type.step_names
        if not 0 < found.done < len(names) or names[found.done] != found.next_step:
            logger.warning(
                "streamq.job.progress_ignored",
                done=found.done,
                next_step=found.next_step,
                steps=list(names),
            )
            return 0
        try:
            ctx.resumed(found.done, found.checkpoint)
        except ValueError as exc:
            logger.warning("streamq.job.checkpoint_unreadable", error=str(exc), done=found.done)
            return 0
        return found.done

    async def record(
        self, d: Delivery, job: Job[Any], job_type: JobType, ctx: JobContext[Any], done: int
    ) -> None:
        """Record that ``done`` steps are done, with the checkpoint if it changed.

        A failed call is logged and the steps go on (the next record, or the ack, may well go
        through; at worst a later delivery runs this step again). Raises StepLeaseLost when
        the entry is not this worker's any more: its new holder runs the job from here.
        """
        try:
            owned = await self._backend.record_progress(
                d.type,
                self._consumer,
                d.entry_id,
                job.id or "",
                done=done,
                next_step=job_type.step_names[done],
                checkpoint=ctx.unrecorded(),
                ttl_ms=PROGRESS_TTL_MS,
            )
        except BackendError as exc:
            logger.warning("streamq.job.step_not_recorded", error=str(exc), done=done)
            return
        if not owned:
            raise StepLeaseLost
        ctx.recorded()
