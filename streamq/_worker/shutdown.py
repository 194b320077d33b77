"""The bounded shutdown: a grace period for the running jobs, then one clean-up deadline.

After a stop the feeders (the read, recovery and due-job loops) end, and what was delivered gets
``shutdown_grace`` to finish. Everything after that (cancelling the jobs still running, the last
acks, handing back what is unfinished, leaving the groups) runs within one deadline,
``shutdown_cleanup``, or :data:`HARD_STOP_CLEANUP` after a second stop. What it did not get to
stays pending under this consumer: other workers recover it after ``claim_after``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.acks import AckBatcher
from streamq._worker.lanes import Lanes
from streamq._worker.state import Held, WorkerState
from streamq.backends._base import Backend
from streamq.exceptions import BackendError

#: Seconds left for the clean-up after a second stop (a second signal): enough to hand back
#: what is unfinished on a server that answers, short enough to count as "at once".
HARD_STOP_CLEANUP = 1.0


class Shutdown:
    """Stops a running worker: its loops, its lanes, and what it holds, within the deadlines."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        acks: AckBatcher,
        lanes: Lanes[Held],
        *,
        types: Mapping[str, JobType],
        consumer: str,
        claim_after: float,
        grace: float,
        cleanup: float,
    ) -> None:
        self._state = state
        self._backend = backend
        self._acks = acks
        self._lanes = lanes
        self._types = list(types)
        self._consumer = consumer
        self._claim_after = claim_after
        self._grace = grace
        self._cleanup = cleanup

    async def let_running_finish(self, feeders: Sequence[asyncio.Task[None]]) -> None:
        """Once stopping: wait for the feeders to end, then give what was delivered the rest of
        the grace period (queued jobs still start); a hard stop ends the wait."""
        assert self._state.stop_at is not None
        grace_end = self._state.stop_at + self._grace
        # The feeders exit by themselves once stopping is set (after their current call), so
        # every delivery they took is held before the grace period starts; one stuck in a call
        # to a server that does not answer is cancelled with the rest.
        await self._wait_until(feeders, grace_end)
        lanes = self._lanes
        drained = asyncio.ensure_future(lanes.drained())
        await self._wait_until([drained], grace_end)
        drained.cancel()
        running = lanes.running
        if running:
            logger.warning("streamq.worker.cancelled_jobs", count=running)

    async def _wait_until(self, tasks: Sequence[asyncio.Future[Any]], deadline: float) -> None:
        """Wait for ``tasks`` to end, until ``deadline`` at most, or until a hard stop."""
        if all(t.done() for t in tasks):
            return
        ended = asyncio.ensure_future(asyncio.wait(tasks))  # cancelling it leaves them be
        hard = asyncio.ensure_future(self._state.hard_stop.wait())
        try:
            await asyncio.wait(
                [ended, hard],
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ended.cancel()
            hard.cancel()

    def _deadline(self, start: float) -> float:
        end = start + self._cleanup
        hard_at = self._state.hard_at
        if hard_at is not None:
            end = min(end, max(start, hard_at) + HARD_STOP_CLEANUP)
        return end

    async def clean_up_within_deadline(
        self, feeders: list[asyncio.Task[None]], keepers: list[asyncio.Task[None]]
    ) -> None:
        """Everything after the grace period, cut short at one deadline (shutdown_cleanup, or
        HARD_STOP_CLEANUP after a second stop)."""
        state = self._state
        start = time.monotonic()
        if state.stop_at is None:  # cancelled from outside before any stop
            state.stop_at = start
        state.stopping.set()
        cleanup = asyncio.create_task(self._clean_up(feeders, keepers, start))
        hard = asyncio.ensure_future(state.hard_stop.wait())
        try:
            while not cleanup.done():
                left = self._deadline(start) - time.monotonic()
                if left <= 0:
                    break
                waits = [cleanup] if hard.done() else [cleanup, hard]
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hard.cancel()
            if not cleanup.done():
                logger.error(
                    "streamq.worker.cleanup_cut_short",
                    after_s=round(time.monotonic() - start, 2),
                    held=len(state.running),
                    unacked=self._acks.unacked,
                )
                cleanup.cancel()
            loops = [*feeders, *keepers]
            for t in loops:
                t.cancel()
            # A call cancelled in the middle ends at once (its connection is dropped).
            await asyncio.wait([cleanup, *loops], timeout=1.0)
            if cleanup.done() and not cleanup.cancelled() and cleanup.exception() is not None:
                logger.error("streamq.worker.cleanup_failed", error=repr(cleanup.exception()))

    async def _clean_up(
        self, feeders: list[asyncio.Task[None]], keepers: list[asyncio.Task[None]], start: float
    ) -> None:
        """Cancel what still runs, ack what finished, hand back the rest, leave the groups."""
        for t in feeders:
            t.cancel()  # only one stuck in a call is still running here
        # Cancelled jobs get half of the time to wind down; one that will not end (it swallows
        # its cancel) is abandoned, and its entry handed back with the others.
        lanes = self._lanes
        cancel = bool(lanes.running or lanes.waiting)
        half = (self._deadline(start) - time.monotonic()) / 2
        await lanes.close(cancel=cancel, within=max(0.05, half))
        # Acks and leases are never cancelled in the middle of a call: told to close, they
        # finish what they are doing and return (the deadline cuts them short otherwise).
        self._state.closing.set()
        self._acks.wake.set()
        await asyncio.wait([*feeders, *keepers])
        await self._acks.final_acks()
        await self._release_unfinished()
        await self._leave_groups()
        try:
            await self._backend.remove_worker(self._consumer)
        except BackendError as exc:
            logger.warning("streamq.worker.unregister_failed", error=str(exc))

    async def _release_unfinished(self) -> None:
        """Entries still held at exit become claimable by another worker at once; the delivery
        the stop interrupted does not count towards max_deliveries."""
        idle_ms = int(self._claim_after * 1000)
        for type_, runs in self._state.by_type().items():
            ids = [r.delivery.entry_id for r in runs]
            try:
                await self._backend.release(type_, self._consumer, ids, idle_ms)
            except BackendError as exc:
                logger.warning("streamq.worker.release_failed", error=str(exc), count=len(ids))
        self._state.running.clear()

    async def _leave_groups(self) -> None:
        """A clean exit takes this consumer's name out of each group, so consumer lists do not
        grow with every restart. What it still holds (handed back, retries waiting) passes to
        the hand-back consumer as it is, claimable when it would have been."""
        for type_ in self._types:
            try:
                await self._backend.remove_consumer(type_, self._consumer, hand_over=True)
            except BackendError as exc:
                logger.warning("streamq.worker.leave_failed", error=str(exc), job_type=type_)
