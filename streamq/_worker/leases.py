"""The lease keeper: every ``heartbeat``, refresh the leases of the jobs this worker holds (so
long jobs are not taken over), write the worker's heartbeat record, and sample the queues for
the in-flight and waiting gauges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping

from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.acks import AckBatcher
from streamq._worker.state import Held, WorkerState
from streamq._worker.type_caps import describe
from streamq.backends._base import Backend
from streamq.exceptions import BackendError

#: Set by ``consume -p`` in each child's environment: the supervisor's pid and the child's index.
SUPERVISOR_ENV = "STREAMQ_SUPERVISOR"


class LeaseKeeper:
    """Keeps what this worker holds its own, and tells the fleet it is alive."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        acks: AckBatcher,
        *,
        types: Mapping[str, JobType],
        consumer: str,
        concurrency: int,
        type_concurrency: Mapping[str, int] | None = None,
        heartbeat: float,
        started_at: float,
    ) -> None:
        self._state = state
        self._backend = backend
        self._acks = acks
        self._types = list(types)
        self._consumer = consumer
        self._concurrency = concurrency
        self._type_concurrency = describe(type_concurrency or {})
        self._heartbeat = heartbeat
        self._started_at = started_at
        self._sampled: dict[str, tuple[int, int]] = {}

    async def loop(self) -> None:
        """Every heartbeat until the worker closes: leases, then the record and the gauges."""
        state = self._state
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.closing.wait(), self._heartbeat)
            if state.closing.is_set():
                return
            async with state.pel_lock:
                await self._refresh_leases()
            try:
                await self.write_heartbeat()
                await self._sample_queues()
            except BackendError as exc:
                logger.warning("streamq.worker.heartbeat_failed", error=str(exc))

    async def _refresh_leases(self) -> None:
        """Refresh the lease of every job held, type by type. A type whose refresh fails (its
        stream broken, its node down) is logged and skipped: the other types' jobs keep their
        leases, or they would be taken over and run twice."""
        by_type: dict[str, list[Held]] = self._state.by_type()
        for type_, runs in by_type.items():
            ids = [r.delivery.entry_id for r in runs]
            try:
                lost = set(await self._backend.refresh(type_, self._consumer, ids))
            except BackendError as exc:
                logger.warning(
                    "streamq.worker.lease_refresh_failed",
                    job_type=type_,
                    count=len(ids),
                    error=str(exc),
                )
                continue
            for r in runs:
                if r.delivery.entry_id in lost and not r.lost:
                    r.lost = True
                    logger.warning("streamq.job.lease_lost", stage="heartbeat", **r.log())

    async def write_heartbeat(self) -> None:
        """Write this worker's record (``streamq workers`` shows it), alive for 3 heartbeats."""
        info = {
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "types": ",".join(self._types),
            "concurrency": str(self._concurrency),
            "type_concurrency": self._type_concurrency,
            "in_flight": str(len(self._state.running)),
            "processed": str(self._acks.processed),
            "started_at": f"{self._started_at:.3f}",
            "heartbeat_at": f"{time.time():.3f}",
            "paused": ",".join(sorted(self._state.paused)),
            # PID:INDEX when `consume -p` runs this worker (streamq/_cli/supervisor.py).
            "supervisor": os.environ.get(SUPERVISOR_ENV, ""),
        }
        await self._backend.heartbeat(self._consumer, info, ttl_s=self._heartbeat * 3)

    async def _sample_queues(self) -> None:
        """Refresh what the in-flight and waiting gauges report for the served types."""
        for type_ in self._types:
            raw = await self._backend.stats(type_)
            self._sampled[type_] = (raw.pending, max(0, raw.length - raw.pending))

    def gauge_values(self) -> list[tuple[str, int, int]]:
        """(type, in flight, waiting) per served type, as last sampled: the gauges' source."""
        return [(t, in_flight, waiting) for t, (in_flight, waiting) in self._sampled.items()]
