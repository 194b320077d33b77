"""The ticker: fires the periodic jobs of the types a worker serves.

Every worker serving a type runs one; each wakes at the next tick time of its schedules, and
the backend's ``fire_tick`` (the marker and the append in one atomic step) lets exactly one of
them enqueue each tick. The job of a tick has the same id in every worker
(:meth:`~streamq._schedules.Schedule.job_id`). What to fire after a gap is the schedule's to say
(:meth:`~streamq._schedules.Schedule.due`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from streamq import _codec
from streamq._job import Job
from streamq._logging import logger
from streamq._registry import Registry
from streamq._schedules import Schedule
from streamq._worker.pausing import POLL_EVERY
from streamq._worker.state import WorkerState
from streamq.backends._base import Backend
from streamq.exceptions import BackendError

#: Seconds before a tick that failed on a server error is tried again.
RETRY_AFTER_ERROR_S = 0.5


class Ticker:
    """Fires ``schedules`` (each of a served type) until the worker stops."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        registry: Registry,
        schedules: Sequence[Schedule],
    ) -> None:
        self._state = state
        self._backend = backend
        self._schedules = list(schedules)
        # The args are checked once, at start: a schedule whose args do not fit its type is a
        # mistake in the code, said before the first tick.
        self._args: dict[str, Any] = {
            s.name: _codec.convert_args(
                registry.get(s.type).args, dict(s.args), job_id=None, job_type=s.type
            )
            for s in self._schedules
        }
        self.fired = 0
        # Per type, when this worker last fired what was due (Schedule.due's looked_ms); a
        # paused type has none, so its resume is a gap for the catch-up rule.
        self._looked: dict[str, int] = {}

    def _fields(self, schedule: Schedule, tick_ms: int) -> _codec.Fields:
        job = Job(type=schedule.type, args=self._args[schedule.name])
        return _codec.encode(job, schedule.job_id(tick_ms))

    async def fire_due(self, now_ms: int) -> None:
        """Fire what is due at ``now_ms``: one marker read per type, one call per tick."""
        by_type: dict[str, list[Schedule]] = {}
        for s in self._schedules:
            by_type.setdefault(s.type, []).append(s)
        backend, paused = self._backend, self._state.paused
        for type_, schedules in by_type.items():
            if type_ in paused:
                # No tick fires while its type is paused; at the resume, what was missed is the
                # schedule's catch-up rule's to say, as after a time with no worker.
                self._looked.pop(type_, None)
                continue
            last = await backend.last_ticks(type_, [s.name for s in schedules])
            looked = self._looked.get(type_)
            for s in schedules:
                for tick_ms in s.due(now_ms, last.get(s.name), looked):
                    fields = self._fields(s, tick_ms)
                    if await backend.fire_tick(type_, s.name, tick_ms, fields):
                        self.fired += 1
                        logger.info(
                            "streamq.schedule.fired",
                            schedule=s.name,
                            job_type=type_,
                            tick_ms=tick_ms,
                            late_ms=now_ms - tick_ms,
                        )
            self._looked[type_] = now_ms

    async def loop(self) -> None:
        """Until stopping: fire what is due, sleep until the next tick time."""
        state = self._state
        while not state.stopping.is_set():
            now_ms = int(time.time() * 1000)
            try:
                await self.fire_due(now_ms)
            except BackendError as exc:
                logger.warning("streamq.schedule.tick_failed", error=str(exc))
                wait = RETRY_AFTER_ERROR_S
            else:
                # time.time() may have moved on while firing: sleep from the clock's time now.
                now_ms = int(time.time() * 1000)
                next_ms = min(s.next_tick(now_ms) for s in self._schedules)
                wait = max(0.0, (next_ms - now_ms) / 1000) + 0.001
            if state.paused:
                # Look again soon: a resume fires what the schedule's catch-up rule owes at once,
                # not at the next tick time.
                wait = min(wait, POLL_EVERY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.stopping.wait(), wait)
