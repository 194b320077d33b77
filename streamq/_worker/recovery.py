"""Failed deliveries and recovery: retries after a backoff, dead letters, and the recovery pass
that claims what is idle too long (a dead worker's entries).

A retry waits in the schedule, not in the PEL: the failed entry moves (atomically) into its
stream's schedule with its deliveries so far and its error, due after the backoff, holding no
lease and no slot; the due-job mover puts it back in the stream when it is due, and any worker
of the type takes it from there. So a backoff can be hours long (``retry_max``), and the
recovery pass's cursor over the PEL only meets entries whose worker died.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping

from streamq import _tracing
from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.backoff import backoff
from streamq._worker.state import Held, WorkerState
from streamq._worker.type_caps import TypeCaps
from streamq.backends._base import (
    Backend,
    Claimed,
    DeadLetter,
    Delivery,
    JobEnd,
    Redelivery,
    job_id_of,
)
from streamq.exceptions import BackendError

#: The longest last error a waiting retry carries (the rest is cut, marked with an ellipsis).
ERROR_CAP = 1000


class Retries:
    """What becomes of a failed delivery: retried after a backoff, or dead-lettered."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        *,
        types: Mapping[str, JobType],
        consumer: str,
        retry_base: float,
        retry_max: float,
        max_dead: int,
    ) -> None:
        self._state = state
        self._backend = backend
        self._consumer = consumer
        # Per type: (base, cap) of its backoff, the type's own settings over the worker's.
        self._backoff = {
            t: (
                retry_base if jt.retry_base is None else jt.retry_base,
                retry_max if jt.retry_max is None else jt.retry_max,
            )
            for t, jt in types.items()
        }
        self._max_dead = max_dead
        # Types with several steps: a job's dead letter also deletes its step progress.
        self._ending = frozenset(t for t, jt in types.items() if jt.records_steps)

    def wait_for(self, type_: str, deliveries: int) -> float:
        """Seconds the retry after the ``deliveries``-th failed delivery of a ``type_`` job
        waits (exponential, with jitter, up to the type's ``retry_max``)."""
        base, cap = self._backoff[type_]
        return backoff(deliveries, base=base, cap=cap)

    async def retry_later(self, held: Held, error: str, after: float | None = None) -> None:
        """Move the failed entry into its schedule, due after its backoff (or ``after``, a
        step's :class:`~streamq.Retry`): it holds no lease and no slot while it waits."""
        d = held.delivery
        wait = self.wait_for(d.type, d.deliveries) if after is None else max(0.0, after)
        logger.warning("streamq.job.failed", error=error, retry_in=round(wait, 3))
        _tracing.count(_tracing.FAILED, d.type)
        if len(error) > ERROR_CAP:
            error = error[: ERROR_CAP - 1] + "\u2026"
        state = self._state
        try:
            async with state.pel_lock:
                due = await self._backend.retry_later(
                    d.type,
                    self._consumer,
                    d.entry_id,
                    delay_ms=math.ceil(wait * 1000),
                    deliveries=d.deliveries,
                    error=error,
                )
        except BackendError as exc:
            # Still pending under this consumer, its lease no longer kept: recovered after
            # claim_after, as if this worker had died.
            logger.warning("streamq.job.retry_not_scheduled", error=str(exc))
        else:
            if not due:
                logger.warning("streamq.job.lease_lost", stage="retry")
            else:
                _tracing.count(_tracing.RETRIED, d.type)
        state.forget(held)

    async def dead_letter(self, held: Held, letter: DeadLetter) -> None:
        """Move the entry to its type's dead stream (poison, a final failure, or too many
        deliveries)."""
        d = held.delivery
        end = None
        if d.type in self._ending:
            job_id = job_id_of(d.fields)
            end = None if job_id is None else JobEnd(d.entry_id, job_id, progress=True)
        try:
            async with self._state.pel_lock:
                owned = await self._backend.dead_letter(
                    d.type, self._consumer, d.entry_id, letter, self._max_dead, d.fields, end=end
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
    """The recovery pass: every ``claim_after / 4``, claim what is idle past ``claim_after`` (a
    dead worker's entries), as many as there are free slots (and, for a type with a cap, as
    many as it has room for), and start it (a paused type's are left where they are)."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        start: Callable[[list[Delivery]], Awaitable[None]],
        *,
        types: Mapping[str, JobType],
        consumer: str,
        concurrency: int,
        claim_after: float,
        caps: TypeCaps | None = None,
    ) -> None:
        self._state = state
        self._backend = backend
        self._start = start
        self._types = list(types)
        self._consumer = consumer
        self._concurrency = concurrency
        self._claim_after = claim_after
        self._caps = caps

    async def loop(self) -> None:
        """Pass after pass until the worker stops."""
        state = self._state
        interval = min(max(self._claim_after / 4, 0.05), 10.0)
        claim_ms = int(self._claim_after * 1000)
        cursors = dict.fromkeys(self._types, "0-0")
        caps = self._caps
        failures = 0
        while not state.stopping.is_set():
            state.recover_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.recover_wake.wait(), interval)
            if state.stopping.is_set():
                return
            try:
                # The cursor only ever walks on (retries wait in the schedule, not in the PEL),
                # so entries deep in the PEL, a dead worker's, are reached however many others
                # there are: XAUTOCLAIM looks at no more than 10 x COUNT entries per call.
                for type_ in self._types:
                    if type_ in state.paused:  # a paused type's idle entries wait for a resume
                        continue
                    free = self._concurrency - len(state.running)
                    if free <= 0:
                        break
                    if caps is not None:
                        room = caps.room(type_)
                        if room is not None:
                            if room <= 0:  # at its cap: its idle entries wait for a later pass
                                continue
                            free = min(free, room)
                    claimed = await self._backend.claim_idle(
                        type_, self._consumer, claim_ms, free, cursors[type_]
                    )
                    cursors[type_] = claimed.cursor
                    await self._start_claimed(type_, claimed)
                failures = 0
            except BackendError as exc:
                failures += 1
                await state.pause_after_error("recover", exc, failures)

    async def _start_claimed(self, type_: str, claimed: Claimed) -> None:
        for entry_id in claimed.deleted:
            logger.warning("streamq.job.vanished", job_type=type_, entry_id=entry_id)
        unheld: list[Delivery] = []
        running = self._state.running
        for d in claimed.deliveries:
            if (type_, d.entry_id) in running:
                # Still running here: its lease lapsed (a blocked loop?) and this pass took it
                # back. One run is enough; its ack will succeed.
                logger.warning("streamq.job.lease_reclaimed", job_type=type_, entry_id=d.entry_id)
                continue
            # Marked as claimed: it may have run before even when its count says 1 (a hand-back
            # took its delivery back), so a job with several steps looks for its progress.
            unheld.append(Redelivery(d.type, d.entry_id, d.fields, d.deliveries))
        await self._start(unheld)
