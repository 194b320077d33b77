"""Failed deliveries and recovery: retries after a backoff, dead letters, and the recovery pass
that claims what is due (this worker's retries, by id) or idle too long (a dead worker's entries).

A retry is not re-enqueued: the entry stays pending, its idle time set so that it becomes
claimable when its backoff ends (``claim_after`` minus the backoff). :class:`Retries` remembers
when each of its own is due, so the recovery pass wakes for it and claims it by id, and the
pass's cursor over the PEL never has to go back for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
from collections.abc import Callable, Mapping

from streamq import _tracing
from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.backoff import backoff
from streamq._worker.state import Held, WorkerState
from streamq.backends._base import Backend, Claimed, DeadLetter, Delivery
from streamq.exceptions import BackendError


class Retries:
    """What becomes of a failed delivery: retried after a backoff, or dead-lettered."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        *,
        consumer: str,
        claim_after: float,
        retry_base: float,
        max_dead: int,
    ) -> None:
        self._state = state
        self._backend = backend
        self._consumer = consumer
        self._claim_after = claim_after
        self._retry_base = retry_base
        self._max_dead = max_dead
        #: Retries of ours (when due, monotonic; type; entry id), a heap.
        self.due: list[tuple[float, str, str]] = []

    async def retry_later(self, held: Held, error: str) -> None:
        """Leave the entry pending with an idle time that makes it claimable after the backoff."""
        d = held.delivery
        wait = backoff(d.deliveries, base=self._retry_base, cap=self._claim_after)
        logger.warning("streamq.job.failed", error=error, retry_in=round(wait, 3))
        _tracing.count(_tracing.FAILED, d.type)
        # Rounded up, plus slack: the recovery pass at the due time must find the entry idle at
        # least claim_after despite millisecond truncation (here and in the backend), or the
        # retry would wait for the next regular pass (claim_after / 4 later).
        idle_ms = math.ceil((self._claim_after - wait) * 1000) + 5
        state = self._state
        try:
            async with state.pel_lock:
                owned = await self._backend.retry_later(d.type, self._consumer, d.entry_id, idle_ms)
        except BackendError as exc:
            # Still pending under this consumer: recovered after claim_after.
            logger.warning("streamq.job.retry_not_scheduled", error=str(exc))
        else:
            if not owned:
                logger.warning("streamq.job.lease_lost", stage="retry")
            else:
                _tracing.count(_tracing.RETRIED, d.type)
                heapq.heappush(self.due, (time.monotonic() + wait, d.type, d.entry_id))
                state.recover_wake.set()
        state.forget(held)

    async def dead_letter(self, held: Held, letter: DeadLetter) -> None:
        """Move the entry to its type's dead stream (poison, a final failure, or too many
        deliveries)."""
        d = held.delivery
        try:
            async with self._state.pel_lock:
                owned = await self._backend.dead_letter(
                    d.type, self._consumer, d.entry_id, letter, self._max_dead
                )
        except BackendError as exc:
            logger.error("streamq.job.dead_letter_failed", error=str(exc), reason=letter.reason)
        else:
            if owned:
                logger.error("streamq.job.dead", reason=letter.reason, error=letter.error or None)
                _tracing.count(_tracing.DEAD, d.type)
            else:
                logger.warning("streamq.job.lease_lost", stage="dead_letter")
        self._state.forget(held)


class Recovery:
    """The recovery pass: every ``claim_after / 4`` (and when a retry of ours is due), claim
    what is due or idle past ``claim_after``, as many as there are free slots, and start it."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        retries: Retries,
        start: Callable[[list[Delivery]], None],
        *,
        types: Mapping[str, JobType],
        consumer: str,
        concurrency: int,
        claim_after: float,
    ) -> None:
        self._state = state
        self._backend = backend
        self._retry_due = retries.due
        self._start = start
        self._types = list(types)
        self._consumer = consumer
        self._concurrency = concurrency
        self._claim_after = claim_after

    async def loop(self) -> None:
        """Pass after pass until the worker stops."""
        state = self._state
        interval = min(max(self._claim_after / 4, 0.05), 10.0)
        claim_ms = int(self._claim_after * 1000)
        cursors = dict.fromkeys(self._types, "0-0")
        failures = 0
        while not state.stopping.is_set():
            wait = interval
            if self._retry_due:
                wait = min(wait, max(0.0, self._retry_due[0][0] - time.monotonic()))
            if wait > 0:
                state.recover_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.recover_wake.wait(), wait)
            if state.stopping.is_set():
                return
            try:
                await self._claim_due_retries(interval, claim_ms)
                # The cursor only ever walks on (retries are claimed by id above), so that in a
                # failure storm entries deep in the PEL, a dead worker's, are still reached:
                # XAUTOCLAIM looks at no more than 10 x COUNT entries per call.
                for type_ in self._types:
                    free = self._concurrency - len(state.running)
                    if free <= 0:
                        break
                    claimed = await self._backend.claim_idle(
                        type_, self._consumer, claim_ms, free, cursors[type_]
                    )
                    cursors[type_] = claimed.cursor
                    self._start_claimed(type_, claimed)
                failures = 0
            except BackendError as exc:
                failures += 1
                await state.pause_after_error("recover", exc, failures)

    async def _claim_due_retries(self, interval: float, claim_ms: int) -> None:
        """Claim the retries of ours that are due, by id, as many as there are free slots; the
        others are tried again at the next pass (another worker may take them first)."""
        now = time.monotonic() + 0.001
        due: dict[str, list[str]] = {}
        later: list[tuple[float, str, str]] = []
        free = self._concurrency - len(self._state.running)
        heap = self._retry_due
        while heap and heap[0][0] <= now:
            _, type_, entry_id = heapq.heappop(heap)
            if free > 0:
                due.setdefault(type_, []).append(entry_id)
                free -= 1
            else:
                later.append((now + interval, type_, entry_id))
        for item in later:
            heapq.heappush(heap, item)
        batches = list(due.items())
        for i, (type_, ids) in enumerate(batches):
            try:
                claimed = await self._backend.claim(type_, self._consumer, ids, claim_ms)
            except BackendError:
                # Still idle in the PEL: claimable at the next pass, here or elsewhere.
                for t, rest in batches[i:]:
                    for entry_id in rest:
                        heapq.heappush(heap, (now + interval, t, entry_id))
                raise
            self._start_claimed(type_, claimed)

    def _start_claimed(self, type_: str, claimed: Claimed) -> None:
        for entry_id in claimed.deleted:
            logger.warning("streamq.job.vanished", job_type=type_, entry_id=entry_id)
        unheld = []
        running = self._state.running
        for d in claimed.deliveries:
            if (type_, d.entry_id) in running:
                # Still running here: its lease lapsed (a blocked loop?) and this pass took it
                # back. One run is enough; its ack will succeed.
                logger.warning("streamq.job.lease_reclaimed", job_type=type_, entry_id=d.entry_id)
                continue
            unheld.append(d)
        self._start(unheld)
