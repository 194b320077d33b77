"""The worker: reads jobs, runs them on lanes with bounded concurrency, acks them, keeps their
leases, recovers and retries, and stops within its deadlines.

:class:`Worker` holds the settings and composes the parts, one module each:

- :mod:`~streamq._worker.reading`: the read loop (reads for the free slots, acks go with reads);
- :mod:`~streamq._worker.type_caps`: per-type caps, the read's share of each type and its room;
- :mod:`~streamq._worker.acks`: runs each delivery, batches the acks, sends those the reads do not;
- :mod:`~streamq._worker.leases`: lease refresh, the heartbeat record, the queue gauges;
- :mod:`~streamq._worker.health`: the liveness file a probe reads (``streamq health``);
- :mod:`~streamq._worker.recovery`: retries, dead letters, and the recovery pass;
- :mod:`~streamq._worker.scheduling`: moves the due delayed jobs into their streams;
- :mod:`~streamq._worker.shutdown`: the grace period and the one clean-up deadline;
- :mod:`~streamq._worker.periodic`: the ticker that fires the served types' periodic jobs;
- :mod:`~streamq._worker.pausing`: polls the served types' paused marks (docs/control.md);
- :mod:`~streamq._worker.cancelling`: polls the cancel requests of the types it runs jobs of;
- :mod:`~streamq._worker.state`: what they share (the deliveries held, the events of a stop);
- :mod:`~streamq._worker.lanes`: the long-lived tasks deliveries run on, and their time limits;
- :mod:`~streamq._worker.runner`: one delivery, decoded, checked and run to its
  :mod:`~streamq._worker.outcome`, with :mod:`~streamq._worker.steps` (calling the steps),
  :mod:`~streamq._worker.threads` (the sync steps' threads) and :mod:`~streamq._worker.limits`;
- :mod:`~streamq._worker.backoff` (how long to wait) and :mod:`~streamq._worker.preflight`
  (the server settings checked at start).

No Redis calls here: everything goes through the :class:`~streamq.backends._base.Backend`
protocol, so the same worker runs on the memory backend in unit tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from datetime import timedelta
from typing import Any

from streamq import _tracing
from streamq._enqueue import Enqueuer
from streamq._logging import logger
from streamq._registry import (
    DEFAULT_JOB_TIMEOUT,
    DEFAULT_RETRY_MAX,
    JobType,
    Registry,
    seconds,
)
from streamq._worker.acks import AckBatcher
from streamq._worker.cancelling import CancelWatcher
from streamq._worker.flow import FlowGate
from streamq._worker.health import HealthFile
from streamq._worker.lanes import Lanes
from streamq._worker.leases import LeaseKeeper
from streamq._worker.pausing import PauseWatcher
from streamq._worker.periodic import Ticker
from streamq._worker.preflight import check_eviction_policy
from streamq._worker.progress import ProgressKeeper
from streamq._worker.reading import Reader
from streamq._worker.recovery import Recovery, Retries
from streamq._worker.runner import Runner
from streamq._worker.scheduling import DueMover
from streamq._worker.shutdown import HARD_STOP_CLEANUP, Shutdown
from streamq._worker.state import WorkerState
from streamq._worker.type_caps import TypeCaps, resolve_caps
from streamq.backends._base import KEEP_DONE_MAX, KEEP_DONE_MS, Backend, KeepDone
from streamq.exceptions import ConfigError

#: How long a finished job's record is kept by default (``keep_done``), in seconds.
KEEP_DONE = KEEP_DONE_MS / 1000

__all__ = ["HARD_STOP_CLEANUP", "Worker", "default_consumer_name"]


def default_consumer_name() -> str:
    """``host-pid-xxxx``: unique per process, readable in ``streamq pending``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Worker:
    """Runs the handlers of ``types`` with at most ``concurrency`` jobs at once (and at most
    ``type_concurrency[t]`` of a type ``t`` that has a cap).

    Args:
        backend: where the jobs are.
        registry: the job types this process knows.
        types: the types to serve (each must be registered).
        concurrency: jobs run at once; reads ask only for free slots, at most half of them per
            read (the next read is on its way while the lanes run this one's jobs). Default:
            32; with ``type_concurrency`` for every type served, the sum of the caps; with caps
            for some, 32 or the sum of the caps, whichever is more.
        type_concurrency: type -> the most jobs of that type held at once (running or awaiting
            their ack), so that one slow type cannot take every slot (docs/life-of-a-job.md,
            "Per-type concurrency"). The types without a cap share the rest of
            ``concurrency``. A cap above a ``concurrency`` given, below 1, or of a type not
            served is a ConfigError.
        claim_after: an entry idle this long is taken over by a recovery pass (its worker died).
        heartbeat: how often leases of running jobs and the worker record are refreshed
            (default: ``min(10 s, claim_after / 3)``; at most ``claim_after / 2``).
        max_deliveries: deliveries before a failing job goes to the dead stream.
        job_timeout: default per-delivery timeout for types that set none.
        shutdown_grace: how long running jobs may finish after a stop is asked.
        shutdown_cleanup: at most this long after the grace period for the rest of a stop:
            cancelling the jobs still running, the last acks, handing back what is unfinished,
            leaving the groups (each call to a server that does not answer counts against it).
            After a second stop (``now``) at most :data:`HARD_STOP_CLEANUP` of it is left.
        retry_base: backoff after the first failed delivery; doubles per delivery (with
            jitter), up to ``retry_max``. A retry waits in the schedule, holding no lease.
        retry_max: the longest backoff (default 1 h). A job type's own ``retry_base`` and
            ``retry_max`` take precedence.
        block: how long one read waits for new jobs (bounds how fast a stop is noticed).
        max_dead: cap of each type's dead stream.
        keep_done: how long a finished job's record is kept (``Queue.job`` answers ``done``,
            with when it finished, how long it ran and its deliveries): written with its ack,
            in the same atomic call. Default 24 h; 0 writes none (the fastest ack).
        keep_done_max: the most records kept per type (the oldest go first): bounds the
            server's memory whatever the throughput (docs/job-state.md, about 200 bytes each).
        health_file: touched every heartbeat while the worker runs, whether or not the server
            answers: a liveness probe's file (``streamq health``; docs/deploy.md).
    """

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        types: Sequence[str],
        *,
        concurrency: int | None = None,
        type_concurrency: Mapping[str, int] | None = None,
        claim_after: float | timedelta = 60.0,
        heartbeat: float | timedelta | None = None,
        max_deliveries: int = 5,
        job_timeout: float | timedelta = DEFAULT_JOB_TIMEOUT,
        shutdown_grace: float | timedelta = 30.0,
        shutdown_cleanup: float | timedelta = 10.0,
        retry_base: float | timedelta = 1.0,
        retry_max: float | timedelta = DEFAULT_RETRY_MAX,
        block: float | timedelta = 1.0,
        max_dead: int = 10_000,
        keep_done: float | timedelta = KEEP_DONE,
        keep_done_max: int = KEEP_DONE_MAX,
        consumer: str | None = None,
        health_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not types:
            raise ConfigError("a worker needs at least one job type")
        self._types: dict[str, JobType] = {t: registry.get(t) for t in types}
        self._registry = registry
        self._backend = backend
        #: the per-type caps (empty: none), and the total
        self.type_concurrency, self.concurrency = resolve_caps(types, type_concurrency, concurrency)
        concurrency = self.concurrency
        self.claim_after = seconds(claim_after)
        # A default follows the claim_after given: only an explicit pair can contradict.
        self.heartbeat = (
            min(10.0, self.claim_after / 3) if heartbeat is None else seconds(heartbeat)
        )
        self._max_deliveries = max_deliveries
        self._job_timeout = seconds(job_timeout)
        self.shutdown_grace = seconds(shutdown_grace)
        self.shutdown_cleanup = seconds(shutdown_cleanup)
        self.retry_base = seconds(retry_base)
        self.retry_max = seconds(retry_max)
        self.block = seconds(block)
        self.max_dead = max_dead
        self.consumer = consumer or default_consumer_name()
        if max_deliveries < 1:
            raise ConfigError("max_deliveries must be at least 1")
        if self.retry_base < 0 or self.retry_max < 0:
            raise ConfigError("retry_base and retry_max must not be negative")
        if max_dead < 1:
            raise ConfigError("max_dead must be at least 1 (the dead stream keeps that many)")
        self.keep_done = seconds(keep_done)
        self.keep_done_max = keep_done_max
        if self.keep_done < 0:
            raise ConfigError("keep_done must not be negative (0 keeps no records)")
        if keep_done_max < 1:
            raise ConfigError("keep_done_max must be at least 1 (set keep_done=0 for none)")
        keep_ms = int(self.keep_done * 1000)
        keep = KeepDone(keep_ms, keep_done_max) if keep_ms > 0 else None
        if self.claim_after <= 0 or self.heartbeat <= 0:
            # A zero claim_after would take every running job over at once (and derive a
            # heartbeat of 0 from it).
            raise ConfigError("claim_after and heartbeat must be positive")
        if self.heartbeat * 2 > self.claim_after:
            raise ConfigError(
                f"heartbeat ({self.heartbeat}s) must be at most half of claim_after "
                f"({self.claim_after}s), or running jobs would be taken over"
            )
        self.started_at = time.time()
        self._crashed: Exception | None = None
        self._runner = Runner(
            registry,
            self._types,
            job_timeout=self._job_timeout,
            max_deliveries=max_deliveries,
            threads=concurrency,
            group=str(getattr(backend, "group", "")),
            stream=getattr(backend, "jobs_key", str),
            consumer=self.consumer,
            progress=ProgressKeeper(backend, self.consumer),
            # Follow-ups a step enqueues (JobContext.enqueue) are checked against the registry.
            enqueuer=Enqueuer(backend, registry=registry),
        )
        self._state = state = WorkerState()
        caps = TypeCaps(self.type_concurrency, state.running) if self.type_concurrency else None
        retries = Retries(
            state,
            backend,
            types=self._types,
            consumer=self.consumer,
            retry_base=self.retry_base,
            retry_max=self.retry_max,
            max_dead=max_dead,
        )
        self._acks = AckBatcher(
            state,
            backend,
            self._runner,
            retries,
            consumer=self.consumer,
            types=self._types,
            keep=keep,
        )
        self._gate = FlowGate(
            state,
            backend,
            types=self._types,
            claim_after=self.claim_after,
            heartbeat=self.heartbeat,
        )
        self._reader = Reader(
            state,
            backend,
            self._runner,
            self._acks,
            types=self._types,
            consumer=self.consumer,
            concurrency=concurrency,
            block=self.block,
            caps=caps,
            gate=self._gate,
        )
        self._recovery = Recovery(
            state,
            backend,
            self._reader.admit_and_start,
            types=self._types,
            consumer=self.consumer,
            concurrency=concurrency,
            claim_after=self.claim_after,
            caps=caps,
        )
        self._due_mover = DueMover(state, backend, types=self._types)
        self._pauses = PauseWatcher(state, backend, types=self._types, consumer=self.consumer)
        self._cancels = CancelWatcher(state, backend)
        self._leases = LeaseKeeper(
            state,
            backend,
            self._acks,
            types=self._types,
            consumer=self.consumer,
            concurrency=concurrency,
            type_concurrency=self.type_concurrency,
            heartbeat=self.heartbeat,
            started_at=self.started_at,
        )
        for schedule in registry.schedules():
            registry.get(schedule.type)  # a schedule of an unknown type: said at start
        self._health = (
            None if health_file is None else HealthFile(health_file, heartbeat=self.heartbeat)
        )
        schedules = registry.schedules(self._types)
        self._ticker = Ticker(state, backend, registry, schedules) if schedules else None

    @property
    def processed(self) -> int:
        """Jobs this worker ran and acked so far."""
        return self._acks.processed

    @property
    def max_deliveries(self) -> int:
        """Deliveries before a failing job goes to the dead stream (types may set their own)."""
        return self._max_deliveries

    @property
    def job_timeout(self) -> float:
        """Time limit of one delivery for types that set none, in seconds."""
        return self._job_timeout

    @property
    def paused_types(self) -> frozenset[str]:
        """The served types this worker sees paused (it takes none of their jobs), as of its
        last look at the server (every :data:`~streamq._worker.pausing.POLL_EVERY`)."""
        return frozenset(self._state.paused)

    @property
    def in_flight(self) -> int:
        """Deliveries this worker holds right now (running or awaiting their ack)."""
        return len(self._state.running)

    def stop(self, *, now: bool = False) -> None:
        """Stop reading; running jobs get ``shutdown_grace`` to finish (none with ``now``).

        With ``now`` (a second signal) the jobs still running are cancelled at once and the
        clean-up that follows is cut to :data:`HARD_STOP_CLEANUP`: what is unfinished stays
        pending, for other workers.
        """
        self._state.stop(now=now)

    # the run --------------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False, stop_when_empty: bool = False) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT with ``handle_signals``).

        With ``stop_when_empty`` it also stops once every served stream is empty: nothing waiting,
        running or awaiting a retry (used by the demo and tests). A paused type counts as empty
        there: its jobs wait for a resume, not for this worker.
        """
        loop = asyncio.get_running_loop()
        # From the first moment: a SIGTERM during start-up stops the worker as a later one
        # would (it takes nothing and exits 0), instead of killing it with the default action.
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal)
        try:
            await self._backend.ensure_groups(list(self._types))
            await check_eviction_policy(self._backend)
            logger.info(
                "streamq.worker.started",
                consumer=self.consumer,
                types=list(self._types),
                concurrency=self.concurrency,
                event_loop=type(loop).__module__.split(".")[0],
            )
            await self._pauses.check()  # a type paused now is not read even once
            await self._leases.write_heartbeat()
        except BaseException:
            # A failed start-up (server down) leaves nothing behind.
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            raise
        _tracing.add_gauge_source(self._leases.gauge_values)
        lanes = Lanes(self.concurrency, self._acks.run_delivery, self._state.forget)
        self._reader.lanes = lanes
        shutdown = Shutdown(
            self._state,
            self._backend,
            self._acks,
            lanes,
            types=self._types,
            consumer=self.consumer,
            claim_after=self.claim_after,
            grace=self.shutdown_grace,
            cleanup=self.shutdown_cleanup,
        )
        self._runner.resolve_logger()
        feeders = [
            asyncio.create_task(self._guard("read", self._reader.loop(stop_when_empty))),
            asyncio.create_task(self._guard("recover", self._recovery.loop())),
            asyncio.create_task(self._guard("move_due", self._due_mover.loop())),
            asyncio.create_task(self._guard("pause", self._pauses.loop())),
            asyncio.create_task(self._guard("cancel", self._cancels.loop())),
        ]
        if self._ticker is not None:
            feeders.append(asyncio.create_task(self._guard("tick", self._ticker.loop())))
        keepers = [
            asyncio.create_task(self._guard("ack", self._acks.loop())),
            asyncio.create_task(self._guard("lease", self._leases.loop())),
        ]
        if self._health is not None:
            keepers.append(
                asyncio.create_task(self._guard("health", self._health.loop(self._state)))
            )
        if self._gate.active:
            keepers.append(asyncio.create_task(self._guard("flow", self._gate.loop())))
        try:
            await self._state.stopping.wait()
            await shutdown.let_running_finish(feeders)
        finally:
            await shutdown.clean_up_within_deadline(feeders, keepers)
            self._runner.close()
            _tracing.remove_gauge_source(self._leases.gauge_values)
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            logger.info("streamq.worker.stopped", consumer=self.consumer, processed=self.processed)
        if self._crashed is not None:
            raise self._crashed

    async def _guard(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        """Run one of the worker's loops; a bug in it stops the worker instead of hanging it."""
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("streamq.worker.crashed", loop=name)
            self._crashed = exc
            self.stop(now=True)

    def _on_signal(self) -> None:
        hard = self._state.stopping.is_set()
        self.stop(now=hard)  # first: the stop holds whatever the log line meets
        logger.info("streamq.worker.stopping", consumer=self.consumer, immediately=hard)
