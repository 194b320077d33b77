"""The ack batcher: finished jobs wait here for their ack, which goes out in one call per type.

Most acks travel with the read loop's next read (one round trip for both,
:meth:`~streamq._worker.reading.Reader.loop`). The ack loop here sends them on its own only
while the read loop is blocked waiting for new entries or pausing after an error, and at a
stop. An ack that fails is not given up: the jobs stay held (their leases kept) and the ack goes
again after a backoff, so a transient error does not make a batch of finished jobs run again.

:meth:`AckBatcher.run_delivery` (what each lane runs) is here, beside the batch, because its
common end, a job done, is the hot path: it appends to this object's own batch with no call in
between. Its other ends (a retry, a dead letter, a lost lease) go to
:mod:`streamq._worker.recovery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping

from streamq import _tracing
from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.backoff import error_backoff
from streamq._worker.lanes import Lane
from streamq._worker.recovery import Retries
from streamq._worker.runner import Runner
from streamq._worker.state import Held, WorkerState
from streamq.backends._base import (
    F_UNIQUE,
    Backend,
    JobEnd,
    KeepDone,
    job_id_of,
)
from streamq.exceptions import BackendError


class AckBatcher:
    """Runs deliveries to their outcome, batches the acks of those done, and sends them."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        runner: Runner,
        retries: Retries,
        *,
        consumer: str,
        types: Mapping[str, JobType] | None = None,
        keep: KeepDone | None = None,
    ) -> None:
        self._state = state
        self._backend = backend
        self._runner = runner
        self._retries = retries
        self._consumer = consumer
        self._running = state.running
        self._slot_freed = state.slot_freed
        self._ended = state.ended
        self._pel_lock = state.pel_lock
        # Finished jobs awaiting their ack, per type, and how many in all.
        self._to_ack: dict[str, list[Held]] = {}
        self.pending = 0
        # Finished jobs whose ack failed: still held (in state.running, so the lease keeper
        # keeps their leases), sent again at _resend_at; the backoff grows with each failed call.
        self._failed: dict[str, list[Held]] = {}
        self._resend_at = 0.0
        self._failures = 0
        #: The read loop is waiting (blocked in a read, or pausing after an error): the ack
        #: loop sends what finishes meanwhile.
        self.read_blocked = False
        self.wake = asyncio.Event()
        #: Jobs acked so far (what ``Worker.processed`` reports).
        self.processed = 0
        #: The served types whose acks carry an end-of-job clean-up (their step progress):
        #: those with several steps. Empty: every ack is a plain one.
        self.ending = frozenset(t for t, jt in (types or {}).items() if jt.records_steps)
        #: How finished jobs' records are kept (None: no records, the plain ack): with it,
        #: every ack carries one JobEnd per job, with its figures.
        self.keep = keep
        #: Whether an ack may carry ends at all (some type's step progress, or the records).
        self.ends_any = bool(self.ending) or keep is not None
        # Finished unique jobs awaiting their ack (Backend.finish), per type; after a failed
        # call, not sent again before _finish_at.
        self._to_finish: dict[str, list[Held]] = {}
        self._finish_at = 0.0
        self._finish_failures = 0

    @property
    def unacked(self) -> int:
        """Finished jobs not acked yet: waiting for the next call, or for a failed one's retry."""
        return (
            self.pending
            + sum(len(runs) for runs in self._failed.values())
            + sum(len(runs) for runs in self._to_finish.values())
        )

    # one delivery ---------------------------------------------------------------------------

    async def run_delivery(self, held: Held, lane: Lane) -> None:
        """Run one delivery (what a lane does for each) and act on its outcome."""
        held.lane = lane
        if self.keep is None:
            outcome = await self._runner.run(held.delivery, lane)
        else:  # the record says how long it ran
            started = time.monotonic()
            outcome = await self._runner.run(held.delivery, lane)
            held.took_ms = int((time.monotonic() - started) * 1000)
        held.outcome = outcome
        if outcome.kind == "done" and F_UNIQUE in held.delivery.fields and not held.lost:
            self._to_finish.setdefault(held.delivery.type, []).append(held)
            self.wake.set()
        elif outcome.kind == "done":
            self._to_ack.setdefault(held.delivery.type, []).append(held)
            self.pending += 1
            self.wake.set()
            self._slot_freed.set()
        elif outcome.kind == "cancelled" and not held.lost:
            await self._end_cancelled(held)
        elif outcome.kind == "lost":
            # Found between two steps: the entry's new holder runs the job on from there.
            logger.warning("streamq.job.lease_lost", stage="step")
            self._state.forget(held)
        elif held.lost:
            # Another consumer holds the entry now: what happens to it is that one's call.
            logger.warning("streamq.job.failed_after_lease_lost", error=outcome.error or None)
            if outcome.error:
                _tracing.count(_tracing.FAILED, held.delivery.type)
            self._state.forget(held)
        elif outcome.kind == "retry":
            await self._retries.retry_later(held, outcome.error, outcome.retry_in)
        else:
            assert outcome.letter is not None
            if outcome.letter.failed:
                logger.error("streamq.job.failed", error=outcome.error, final=True)
                _tracing.count(_tracing.FAILED, held.delivery.type)
            await self._retries.dead_letter(held, outcome.letter)

    async def _end_cancelled(self, held: Held) -> None:
        """End a job a cancel request stopped: acked, its key released, recorded cancelled. A
        failed call leaves the entry pending (logged): once its lease runs out another worker
        claims it, and cancels it on its request again."""
        d = held.delivery
        end = None
        if d.type in self.ending and (job_id := job_id_of(d.fields)) is not None:
            end = JobEnd(d.entry_id, job_id, progress=True)
        try:
            async with self._pel_lock:
                owned = await self._backend.end_cancelled(
                    d.type, self._consumer, d.entry_id, d.fields, end
                )
        except BackendError as exc:
            logger.warning("streamq.job.cancel_not_recorded", error=str(exc), **held.log())
        else:
            if owned:
                logger.info("streamq.job.ended_cancelled", **held.log())
            else:
                logger.warning("streamq.job.lease_lost", stage="cancel", **held.log())
        self._state.forget(held)

    async def flush_finishes(self) -> None:
        """Ack the finished unique jobs (``Backend.finish``: each key released with its ack),
        one call per type. Not with the plain batch, whose ack knows nothing of keys. A failed
        call goes again after a backoff, the jobs held (their leases kept) meanwhile."""
        batch, self._to_finish = self._to_finish, {}
        if not batch:
            return
        failed: dict[str, list[Held]] = {}
        async with self._pel_lock:
            for type_, runs in batch.items():
                jobs = [(r.delivery.entry_id, r.delivery.fields) for r in runs]
                progress = type_ in self.ending
                ends = _ends_of(runs, progress) if progress or self.keep is not None else ()
                try:
                    lost = set(
                        await self._backend.finish(type_, self._consumer, jobs, ends, self.keep)
                    )
                except BackendError as exc:
                    failed[type_] = runs
                    self._finish_failures += 1
                    delay = error_backoff(self._finish_failures)
                    self._finish_at = time.monotonic() + delay
                    logger.warning(
                        "streamq.job.ack_failed",
                        job_type=type_,
                        error=str(exc),
                        count=len(runs),
                        retry_in=round(delay, 2),
                    )
                    continue
                acked = 0
                for r in runs:
                    if r.delivery.entry_id in lost:
                        logger.warning("streamq.job.lease_lost", stage="ack", **r.log())
                    else:
                        acked += 1
                    self._running.pop((type_, r.delivery.entry_id), None)
                self.processed += acked
                if acked:
                    _tracing.count(_tracing.PROCESSED, type_, acked)
        if failed:
            for type_, runs in failed.items():
                self._to_finish.setdefault(type_, []).extend(runs)
        else:
            self._finish_failures = 0
            self._finish_at = 0.0
        self._slot_freed.set()
        self._ended.set()

    # the batch ------------------------------------------------------------------------------

    def take(self) -> dict[str, list[Held]]:
        """The batch so far, per type; the next one starts empty."""
        batch, self._to_ack, self.pending = self._to_ack, {}, 0
        return batch

    def acking(self) -> dict[str, int]:
        """The batch so far, counted per type (what per-type caps free with the next read)."""
        return {t: len(runs) for t, runs in self._to_ack.items()}

    def ids(self, batch: dict[str, list[Held]]) -> dict[str, list[str]]:
        """The entry ids to ack per type (not those whose lease this worker lost)."""
        ids: dict[str, list[str]] = {}
        for type_, runs in batch.items():
            mine = [r.delivery.entry_id for r in runs if not r.lost]
            if mine:
                ids[type_] = mine
        return ids

    def ends(self, batch: dict[str, list[Held]]) -> dict[str, list[JobEnd]] | None:
        """The end-of-job clean-up of the batch's jobs that have one (types with several steps:
        their step progress), per type, and with :attr:`keep` every job's record figures; None
        when none has (a batch of plain jobs)."""
        ending: Iterable[str] = batch
        if self.keep is None:
            ending = self.ending.intersection(batch) if self.ending else ()
            if not ending:
                return None
        out: dict[str, list[JobEnd]] = {}
        for type_ in ending:
            ends = _ends_of(batch[type_], type_ in self.ending)
            if ends:
                out[type_] = ends
        return out

    def settle(
        self,
        batch: dict[str, list[Held]],
        lost: dict[str, list[str]],
        errors: dict[str, str],
    ) -> None:
        """Account for an ack call: count what was acked, log what was not, free the slots.

        Jobs whose ack failed stay held (their leases refreshed) and their ack goes again after
        a backoff: a transient error must not make a batch of finished jobs run again.
        """
        running = self._running
        failed: list[tuple[str, str, int]] = []
        for type_, runs in batch.items():
            error = errors.get(type_)
            gone = set(lost.get(type_, ()))
            acked = 0
            again: list[Held] = []
            for r in runs:
                if r.lost or r.delivery.entry_id in gone:
                    logger.warning("streamq.job.lease_lost", stage="ack", **r.log())
                elif error is not None:
                    again.append(r)
                    continue
                else:
                    acked += 1
                running.pop((type_, r.delivery.entry_id), None)
            if error is not None and again:
                self._failed.setdefault(type_, []).extend(again)
                failed.append((type_, error, len(again)))
            self.processed += acked
            if acked:
                _tracing.count(_tracing.PROCESSED, type_, acked)
        if failed:
            self._failures += 1
            delay = error_backoff(self._failures)
            self._resend_at = time.monotonic() + delay
            for type_, error, n in failed:
                logger.warning(
                    "streamq.job.ack_failed",
                    job_type=type_,
                    error=error,
                    count=n,
                    retry_in=round(delay, 2),
                )
            self.wake.set()
        elif batch:
            self._failures = 0
        self._slot_freed.set()
        self._ended.set()

    # sending them off the read path ----------------------------------------------------------

    async def loop(self) -> None:
        """Ack what finishes while the read loop waits, and retry failed acks when due."""
        state = self._state
        while not state.closing.is_set():
            # When a failed call may go again: the plain acks', the unique jobs'.
            waits = [self._resend_at] if self._failed else []
            if self._finish_at:
                waits.append(self._finish_at)
            if waits:
                with contextlib.suppress(TimeoutError):
                    wait = min(waits) - time.monotonic()
                    await asyncio.wait_for(self.wake.wait(), max(0.0, wait))
                if self._failed and time.monotonic() >= self._resend_at:
                    self._requeue_failed()
            else:
                await self.wake.wait()
            self.wake.clear()
            if self._to_finish and time.monotonic() >= self._finish_at:
                await self.flush_finishes()
            # Otherwise the read loop is about to send these with its next read.
            if self.read_blocked or state.stopping.is_set():
                await self.flush()

    def _requeue_failed(self) -> None:
        """Send the acks that failed again, with the next read (or the ack loop's next call)."""
        for type_, runs in self._failed.items():
            self._to_ack.setdefault(type_, []).extend(runs)
            self.pending += len(runs)
        self._failed = {}
        # The read loop may be waiting for a free slot: these free theirs with the ack.
        self._slot_freed.set()

    async def flush(self) -> None:
        """Ack everything finished so far: one call per type, however many jobs finished."""
        batch = self.take()
        if not batch:
            return
        lost: dict[str, list[str]] = {}
        errors: dict[str, str] = {}
        ends = self.ends(batch) or {}
        async with self._pel_lock:
            for type_, ids in self.ids(batch).items():
                try:
                    lost[type_] = await self._backend.ack(
                        type_, self._consumer, ids, ends.get(type_, ()), self.keep
                    )
                except BackendError as exc:
                    errors[type_] = str(exc)
        self.settle(batch, lost, errors)

    async def final_acks(self) -> None:
        """At shutdown: ack what finished, and retry failed acks with their backoff until they
        go through (the shutdown deadline cuts this short)."""
        while True:
            if self._failed:
                await asyncio.sleep(max(0.0, self._resend_at - time.monotonic()))
                self._requeue_failed()
            await self.flush()
            if self._to_finish:
                await asyncio.sleep(max(0.0, self._finish_at - time.monotonic()))
                await self.flush_finishes()
            if not self._failed and not self._to_finish:
                return


def _ends_of(runs: list[Held], progress: bool) -> list[JobEnd]:
    """The ends of finished jobs of one type: their step progress (``progress``: a type with
    several steps) and their record's figures (read only when records are kept,
    ``AckBatcher.keep``). None for those whose lease was lost (the new holder ends them)."""
    return [
        JobEnd(
            d.entry_id,
            job_id,
            progress,
            r.took_ms,
            d.deliveries,  # the runner added the deliveries before its retries
        )
        for r in runs
        if not r.lost and (job_id := job_id_of((d := r.delivery).fields)) is not None
    ]
