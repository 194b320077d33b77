"""The pause watcher: reads the paused marks of the served types every :data:`POLL_EVERY`, so
that the read loop, the recovery pass and the ticker leave a paused type alone within about a
second, and take it up again as soon after a resume (docs/control.md).

One call per poll for all the types (the backend's :meth:`~streamq.backends._base.Backend.paused`),
never one per job: the read path only tests whether the set of paused types is empty.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.state import WorkerState
from streamq.backends._base import Backend, PauseRecord

#: Seconds between two reads of the paused marks. While some served type is paused, a read
#: blocks at most this long too, so a resume is seen and acted on within about a second.
POLL_EVERY = 0.5


class PauseWatcher:
    """Keeps ``state.paused`` to the served types' paused marks on the server."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        *,
        types: Mapping[str, JobType],
        consumer: str,
    ) -> None:
        self._state = state
        self._backend = backend
        self._types = list(types)
        self._consumer = consumer

    async def check(self) -> None:
        """Read the marks once and act on a change (at start, before the first read, too)."""
        self._apply(await self._backend.paused(self._types))

    async def loop(self) -> None:
        """Poll every :data:`POLL_EVERY` until the worker stops; on a server error keep what
        was last read and try again after a backoff."""
        await self._state.poll(POLL_EVERY, self.check, "pause_check")

    def _apply(self, found: Mapping[str, PauseRecord]) -> None:
        """Take ``found`` as the paused types: log each change once, wake the read loop."""
        state = self._state
        paused = state.paused
        now = found.keys()
        if now == paused:
            return
        for type_ in sorted(now - paused):
            record = found[type_]
            logger.info(
                "streamq.worker.type_paused",
                job_type=type_,
                consumer=self._consumer,
                paused_since_ms=record.since_ms,
                reason=record.reason or None,
            )
        for type_ in sorted(paused - now):
            logger.info("streamq.worker.type_resumed", job_type=type_, consumer=self._consumer)
        paused.clear()
        paused.update(now)
        state.pause_changed.set()
