"""The due-job mover: while a worker runs, it moves its types' due delayed jobs into their
streams (a feeder like the read loop: it ends once the worker stops).

Every worker of a type runs one; the backend's move is atomic per stream, so several moving at
once never move one job twice, and a worker killed in the middle of a move loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.state import WorkerState
from streamq.backends._base import Backend
from streamq.exceptions import BackendError

#: Seconds between two moves: a due job reaches its stream within about this long.
MOVE_EVERY = 0.05

#: Jobs moved per stream per call; when a call moves that many, the next follows at once.
MOVE_LIMIT = 500


class DueMover:
    """Moves the due jobs of the served types from their schedules into their streams."""

    def __init__(self, state: WorkerState, backend: Backend, *, types: Mapping[str, JobType]):
        self._state = state
        self._backend = backend
        self._types = list(types)
        #: jobs this worker moved so far
        self.moved = 0

    async def loop(self) -> None:
        """Move due jobs every :data:`MOVE_EVERY` until the worker stops."""
        state, move, types = self._state, self._backend.move_due, self._types
        stopping = state.stopping
        failures = 0
        while not stopping.is_set():
            try:
                moved = await move(types, MOVE_LIMIT)
            except BackendError as exc:
                failures += 1
                await state.pause_after_error("move_due", exc, failures)
                continue
            failures = 0
            if moved:
                self.moved += moved
                logger.debug("streamq.schedule.moved", jobs=moved)
                if moved >= MOVE_LIMIT:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), MOVE_EVERY)
