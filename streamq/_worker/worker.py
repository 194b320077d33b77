"""The worker: read loop, bounded concurrency, lease heartbeat, recovery, shutdown.

No Redis calls here: everything goes through the :class:`~streamq.backends._base.Backend`
protocol, so the same worker runs on the memory backend in unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from streamq import _tracing
from streamq._logging import logger
from streamq._registry import DEFAULT_JOB_TIMEOUT, JobType, Registry, seconds
from streamq._worker.backoff import backoff
from streamq._worker.lanes import Lane, Lanes
from streamq._worker.preflight import check_eviction_policy
from streamq._worker.runner import Outcome, Runner, log_fields
from streamq.backends._base import Backend, Claimed, DeadLetter, Delivery
from streamq.exceptions import BackendError, ConfigError

#: Seconds left for the clean-up after a second stop (a second signal): enough to hand back
#: what is unfinished on a server that answers, short enough to count as "at once".
HARD_STOP_CLEANUP = 1.0


def _error_backoff(failures: int) -> float:
    """Seconds before trying the server again after ``failures`` failed calls in a row."""
    return min(5.0, 0.1 * 2.0 ** min(failures, 6))


def default_consumer_name() -> str:
    """``host-pid-xxxx``: unique per process, readable in ``streamq pending``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@dataclasses.dataclass(slots=True)
class _Running:
    """One delivery this worker holds."""

    delivery: Delivery
    lost: bool = False
    outcome: Outcome | None = None

    def log(self) -> dict[str, Any]:
        """Its log fields, for lines logged outside the delivery's own context."""
        if self.outcome is not None:
            return self.outcome.log(self.delivery)
        return log_fields(self.delivery)


class Worker:
    """Runs the handlers of ``types`` with at most ``concurrency`` jobs at once.

    Args:
        backend: where the jobs are.
        registry: the job types this process knows.
        types: the types to serve (each must be registered).
        concurrency: jobs run at once; reads ask only for free slots, at most half of them per
            read (the next read is on its way while the lanes run this one's jobs).
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
        retry_base: backoff after the first failed delivery; doubles per delivery, capped at
            ``claim_after``.
        block: how long one read waits for new jobs (bounds how fast a stop is noticed).
        max_dead: cap of each type's dead stream.
    """

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        types: Sequence[str],
        *,
        concurrency: int = 32,
        claim_after: float | timedelta = 60.0,
        heartbeat: float | timedelta | None = None,
        max_deliveries: int = 5,
        job_timeout: float | timedelta = DEFAULT_JOB_TIMEOUT,
        shutdown_grace: float | timedelta = 30.0,
        shutdown_cleanup: float | timedelta = 10.0,
        retry_base: float | timedelta = 1.0,
        block: float | timedelta = 1.0,
        max_dead: int = 10_000,
        consumer: str | None = None,
    ) -> None:
        if not types:
            raise ConfigError("a worker needs at least one job type")
        self._types: dict[str, JobType] = {t: registry.get(t) for t in types}
        self._registry = registry
        self._backend = backend
        self.concurrency = concurrency
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
        self.block = seconds(block)
        self.max_dead = max_dead
        self.consumer = consumer or default_consumer_name()
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if max_deliveries < 1:
            raise ConfigError("max_deliveries must be at least 1")
        if max_dead < 1:
            raise ConfigError("max_dead must be at least 1 (the dead stream keeps that many)")
        if self.heartbeat * 2 > self.claim_after:
            raise ConfigError(
                f"heartbeat ({self.heartbeat}s) must be at most half of claim_after "
                f"({self.claim_after}s), or running jobs would be taken over"
            )
        # Keyed by (type, entry id): entry ids are unique only within one stream.
        self._running: dict[tuple[str, str], _Running] = {}
        # Finished jobs awaiting their ack, per type. The read loop acks them together with its
        # next read (one round trip); the ack loop acks them only while the read loop is
        # blocked waiting for new entries or pausing after an error, or stopping.
        self._to_ack: dict[str, list[_Running]] = {}
        self._n_to_ack = 0
        # Finished jobs whose ack failed: still held (in self._running, so the lease loop keeps
        # their leases), sent again at _ack_retry_at; the backoff grows with each failed call.
        self._ack_retry: dict[str, list[_Running]] = {}
        self._ack_retry_at = 0.0
        self._ack_failures = 0
        self._read_blocked = False
        self._ack_wake = asyncio.Event()
        # Every call that asks "do I still own this entry?" (ack, refresh, retry, dead-letter)
        # runs one at a time: a refresh racing an ack would report a lease as lost, and one
        # landing after a retry was scheduled would reset that retry's backoff.
        self._pel_lock = asyncio.Lock()
        self._slot_freed = asyncio.Event()
        self._recover_wake = asyncio.Event()
        # Retries of ours (when due, monotonic; type; entry id): the recovery pass wakes for
        # each and claims it by id, so its cursor never has to go back for them.
        self._retry_due: list[tuple[float, str, str]] = []
        self._stopping = asyncio.Event()
        self._closing = asyncio.Event()
        self._hard_stop = asyncio.Event()
        # When stop() and stop(now=True) were first called (monotonic): the deadlines count
        # from there.
        self._stop_at: float | None = None
        self._hard_at: float | None = None
        self._rotation = 0
        # A read asks for at most half the slots, so that one read is on its way while the
        # lanes run what the other brought: the server works while this process does.
        self._read_max = max(1, concurrency // 2)
        self._sampled: dict[str, tuple[int, int]] = {}
        self._runner = Runner(
            registry,
            self._types,
            job_timeout=self._job_timeout,
            max_deliveries=max_deliveries,
            threads=concurrency,
            group=str(getattr(backend, "group", "")),
            stream=getattr(backend, "jobs_key", str),
            consumer=self.consumer,
        )
        self._lanes: Lanes[_Running] | None = None
        self.processed = 0
        self._crashed: Exception | None = None
        self.started_at = time.time()

    @property
    def max_deliveries(self) -> int:
        """Deliveries before a failing job goes to the dead stream (types may set their own)."""
        return self._max_deliveries

    @property
    def job_timeout(self) -> float:
        """Time limit of one delivery for types that set none, in seconds."""
        return self._job_timeout

    @property
    def in_flight(self) -> int:
        """Deliveries this worker holds right now (running or awaiting their ack)."""
        return len(self._running)

    def stop(self, *, now: bool = False) -> None:
        """Stop reading; running jobs get ``shutdown_grace`` to finish (none with ``now``).

        With ``now`` (a second signal) the jobs still running are cancelled at once and the
        clean-up that follows is cut to :data:`HARD_STOP_CLEANUP`: what is unfinished stays
        pending, for other workers.
        """
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stopping.set()
        if now:
            if self._hard_at is None:
                self._hard_at = time.monotonic()
            self._hard_stop.set()
        self._slot_freed.set()
        self._recover_wake.set()

    # the run --------------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False, stop_when_empty: bool = False) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT with ``handle_signals``).

        With ``stop_when_empty`` it also stops once every served stream is empty: nothing waiting,
        running or awaiting a retry (used by the demo and tests).
        """
        loop = asyncio.get_running_loop()
        await self._backend.ensure_groups(list(self._types))
        await check_eviction_policy(self._backend)
        logger.info(
            "streamq.worker.started",
            consumer=self.consumer,
            types=list(self._types),
            concurrency=self.concurrency,
            event_loop=type(loop).__module__.split(".")[0],
        )
        await self._beat()
        # Registered only now, so that a failed start-up (server down) leaves nothing behind.
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal)
        _tracing.add_gauge_source(self._gauge_values)
        self._lanes = Lanes(self.concurrency, self._handle, self._forget)
        self._runner.resolve_logger()
        feeders = [
            asyncio.create_task(self._guard("read", self._read_loop(stop_when_empty))),
            asyncio.create_task(self._guard("recover", self._recover_loop())),
        ]
        keepers = [
            asyncio.create_task(self._guard("ack", self._ack_loop())),
            asyncio.create_task(self._guard("lease", self._lease_loop())),
        ]
        try:
            await self._stopping.wait()
            assert self._stop_at is not None
            grace_end = self._stop_at + self.shutdown_grace
            # The feeders exit by themselves once stopping is set (after their current call),
            # so every delivery they took is in self._running before the grace period starts;
            # one stuck in a call to a server that does not answer is cancelled with the rest.
            await self._wait_until(feeders, grace_end)
            await self._finish_running(grace_end)
        finally:
            await self._clean_up_within_deadline(feeders, keepers)
            self._runner.close()
            _tracing.remove_gauge_source(self._gauge_values)
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
        hard = self._stopping.is_set()
        logger.info("streamq.worker.stopping", consumer=self.consumer, immediately=hard)
        self.stop(now=hard)

    async def _wait_until(self, tasks: Sequence[asyncio.Future[Any]], deadline: float) -> None:
        """Wait for ``tasks`` to end, until ``deadline`` at most, or until a hard stop."""
        if all(t.done() for t in tasks):
            return
        ended = asyncio.ensure_future(asyncio.wait(tasks))  # cancelling it leaves them be
        hard = asyncio.ensure_future(self._hard_stop.wait())
        try:
            await asyncio.wait(
                [ended, hard],
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ended.cancel()
            hard.cancel()

    async def _finish_running(self, grace_end: float) -> None:
        """Give what was delivered until ``grace_end`` to finish (queued jobs still start)."""
        assert self._lanes is not None
        lanes = self._lanes
        drained = asyncio.ensure_future(lanes.drained())
        await self._wait_until([drained], grace_end)
        drained.cancel()
        running = lanes.running
        if running:
            logger.warning("streamq.worker.cancelled_jobs", count=running)

    def _cleanup_deadline(self, start: float) -> float:
        end = start + self.shutdown_cleanup
        if self._hard_at is not None:
            end = min(end, max(start, self._hard_at) + HARD_STOP_CLEANUP)
        return end

    async def _clean_up_within_deadline(
        self, feeders: list[asyncio.Task[None]], keepers: list[asyncio.Task[None]]
    ) -> None:
        """Everything after the grace period, cut short at one deadline (shutdown_cleanup, or
        HARD_STOP_CLEANUP after a second stop). What it did not get to stays in the PEL under
        this consumer: other workers recover it after claim_after."""
        start = time.monotonic()
        if self._stop_at is None:  # cancelled from outside before any stop
            self._stop_at = start
        self._stopping.set()
        cleanup = asyncio.create_task(self._clean_up(feeders, keepers, start))
        hard = asyncio.ensure_future(self._hard_stop.wait())
        try:
            while not cleanup.done():
                left = self._cleanup_deadline(start) - time.monotonic()
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
                    held=len(self._running),
                    unacked=self._n_to_ack + self._n_retry_acks(),
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
        assert self._lanes is not None
        for t in feeders:
            t.cancel()  # only one stuck in a call is still running here
        # Cancelled jobs get half of the time to wind down; one that will not end (it swallows
        # its cancel) is abandoned, and its entry handed back with the others.
        lanes = self._lanes
        cancel = bool(lanes.running or lanes.waiting)
        half = (self._cleanup_deadline(start) - time.monotonic()) / 2
        await lanes.close(cancel=cancel, within=max(0.05, half))
        # Acks and leases are never cancelled in the middle of a call: told to close, they
        # finish what they are doing and return (the deadline cuts them short otherwise).
        self._closing.set()
        self._ack_wake.set()
        await asyncio.wait([*feeders, *keepers])
        await self._final_acks()
        await self._release_unfinished()
        await self._leave_groups()
        try:
            await self._backend.remove_worker(self.consumer)
        except BackendError as exc:
            logger.warning("streamq.worker.unregister_failed", error=str(exc))

    async def _read_loop(self, stop_when_empty: bool) -> None:
        types = list(self._types)
        block_ms = max(1, int(self.block * 1000))
        failures = 0
        # After a full read, more entries are likely waiting: the next read does not block, so
        # that finished jobs wait for it (their ack goes with it) instead of a call of their own.
        more = False
        while not self._stopping.is_set():
            # Finished jobs free their slots with the ack that goes out with this read.
            free = min(self.concurrency - len(self._running) + self._n_to_ack, self._read_max)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            read_types, count = self._share(types, free)
            acks = self._take_acks()
            try:
                if acks or more:
                    ids = self._ack_ids(acks)
                    async with self._pel_lock:
                        answer = await self._backend.ack_and_read(
                            ids, read_types, self.consumer, count
                        )
                    self._settle(acks, answer.lost, answer.failed)
                    batch = answer.deliveries
                else:
                    self._read_blocked = True
                    try:
                        batch = await self._backend.read(read_types, self.consumer, count, block_ms)
                    finally:
                        self._read_blocked = False
            except BackendError as exc:
                if acks:
                    self._settle(acks, {}, dict.fromkeys(acks, str(exc)))
                failures += 1
                # While the read loop waits, the ack loop acks what finishes.
                self._read_blocked = True
                try:
                    await self._pause_after_error("read", exc, failures)
                finally:
                    self._read_blocked = False
                continue
            failures = 0
            more = len(batch) >= count
            self._start(batch)
            if not batch and stop_when_empty and not self._running and await self._all_empty():
                self.stop()

    def _share(self, types: list[str], free: int) -> tuple[list[str], int]:
        """Which types to read, and how many entries in all (the backend shares them among the
        types): every type and ``free``; with more types than free slots, a rotating window of
        ``free`` types, one entry each."""
        if len(types) <= free:
            return types, free
        self._rotation = (self._rotation + free) % len(types)
        return (types[self._rotation :] + types[: self._rotation])[:free], free

    async def _all_empty(self) -> bool:
        for t in self._types:
            if (await self._backend.stats(t)).length:
                return False
        return True

    async def _pause_after_error(self, what: str, exc: BackendError, failures: int) -> None:
        delay = _error_backoff(failures)
        logger.warning(f"streamq.worker.{what}_failed", error=str(exc), retry_in=round(delay, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    def _start(self, deliveries: list[Delivery]) -> None:
        self._runner.look()
        runs = []
        for d in deliveries:
            run = _Running(d)
            self._running[d.type, d.entry_id] = run
            runs.append(run)
        assert self._lanes is not None
        self._lanes.submit(runs)

    # one delivery ---------------------------------------------------------------------------

    async def _handle(self, run: _Running, lane: Lane) -> None:
        outcome = await self._runner.run(run.delivery, lane)
        run.outcome = outcome
        if outcome.kind == "done":
            self._to_ack.setdefault(run.delivery.type, []).append(run)
            self._n_to_ack += 1
            self._ack_wake.set()
            self._slot_freed.set()
        elif run.lost:
            # Another consumer holds the entry now: what happens to it is that one's call.
            logger.warning("streamq.job.failed_after_lease_lost", error=outcome.error or None)
            if outcome.error:
                _tracing.count(_tracing.FAILED, run.delivery.type)
            self._forget(run)
        elif outcome.kind == "retry":
            await self._retry(run, outcome.error)
        else:
            assert outcome.letter is not None
            if outcome.letter.failed:
                logger.error("streamq.job.failed", error=outcome.error, final=True)
                _tracing.count(_tracing.FAILED, run.delivery.type)
            await self._dead(run, outcome.letter)

    async def _retry(self, run: _Running, error: str) -> None:
        """Leave the entry pending with an idle time that makes it claimable after the backoff."""
        d = run.delivery
        wait = backoff(d.deliveries, base=self.retry_base, cap=self.claim_after)
        logger.warning("streamq.job.failed", error=error, retry_in=round(wait, 3))
        _tracing.count(_tracing.FAILED, d.type)
        # Rounded up, plus slack: the recovery pass at the due time must find the entry idle at
        # least claim_after despite millisecond truncation (here and in the backend), or the
        # retry would wait for the next regular pass (claim_after / 4 later).
        idle_ms = math.ceil((self.claim_after - wait) * 1000) + 5
        try:
            async with self._pel_lock:
                owned = await self._backend.retry_later(d.type, self.consumer, d.entry_id, idle_ms)
        except BackendError as exc:
            # Still pending under this consumer: recovered after claim_after.
            logger.warning("streamq.job.retry_not_scheduled", error=str(exc))
        else:
            if not owned:
                logger.warning("streamq.job.lease_lost", stage="retry")
            else:
                _tracing.count(_tracing.RETRIED, d.type)
                heapq.heappush(self._retry_due, (time.monotonic() + wait, d.type, d.entry_id))
                self._recover_wake.set()
        self._forget(run)

    async def _dead(self, run: _Running, letter: DeadLetter) -> None:
        d = run.delivery
        try:
            async with self._pel_lock:
                owned = await self._backend.dead_letter(
                    d.type, self.consumer, d.entry_id, letter, self.max_dead
                )
        except BackendError as exc:
            logger.error("streamq.job.dead_letter_failed", error=str(exc), reason=letter.reason)
        else:
            if owned:
                logger.error("streamq.job.dead", reason=letter.reason, error=letter.error or None)
                _tracing.count(_tracing.DEAD, d.type)
            else:
                logger.warning("streamq.job.lease_lost", stage="dead_letter")
        self._forget(run)

    def _forget(self, run: _Running) -> None:
        self._running.pop((run.delivery.type, run.delivery.entry_id), None)
        self._slot_freed.set()

    # acks, leases, recovery ----------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while not self._closing.is_set():
            if self._ack_retry:
                with contextlib.suppress(TimeoutError):
                    wait = self._ack_retry_at - time.monotonic()
                    await asyncio.wait_for(self._ack_wake.wait(), max(0.0, wait))
                if time.monotonic() >= self._ack_retry_at:
                    self._retry_acks()
            else:
                await self._ack_wake.wait()
            self._ack_wake.clear()
            # Otherwise the read loop is about to send these with its next read.
            if self._read_blocked or self._stopping.is_set():
                await self._flush_acks()

    def _retry_acks(self) -> None:
        """Send the acks that failed again, with the next read (or the ack loop's next call)."""
        for type_, runs in self._ack_retry.items():
            self._to_ack.setdefault(type_, []).extend(runs)
            self._n_to_ack += len(runs)
        self._ack_retry = {}
        # The read loop may be waiting for a free slot: these free theirs with the ack.
        self._slot_freed.set()

    async def _final_acks(self) -> None:
        """At shutdown: ack what finished, and retry failed acks with their backoff until they
        go through (the shutdown deadline cuts this short)."""
        while True:
            if self._ack_retry:
                await asyncio.sleep(max(0.0, self._ack_retry_at - time.monotonic()))
                self._retry_acks()
            await self._flush_acks()
            if not self._ack_retry:
                return

    def _n_retry_acks(self) -> int:
        return sum(len(runs) for runs in self._ack_retry.values())

    def _take_acks(self) -> dict[str, list[_Running]]:
        batch, self._to_ack, self._n_to_ack = self._to_ack, {}, 0
        return batch

    def _ack_ids(self, batch: dict[str, list[_Running]]) -> dict[str, list[str]]:
        """The entry ids to ack per type (not those whose lease this worker lost)."""
        ids: dict[str, list[str]] = {}
        for type_, runs in batch.items():
            mine = [r.delivery.entry_id for r in runs if not r.lost]
            if mine:
                ids[type_] = mine
        return ids

    async def _flush_acks(self) -> None:
        """Ack everything finished so far: one call per type, however many jobs finished."""
        batch = self._take_acks()
        if not batch:
            return
        lost: dict[str, list[str]] = {}
        errors: dict[str, str] = {}
        async with self._pel_lock:
            for type_, ids in self._ack_ids(batch).items():
                try:
                    lost[type_] = await self._backend.ack(type_, self.consumer, ids)
                except BackendError as exc:
                    errors[type_] = str(exc)
        self._settle(batch, lost, errors)

    def _settle(
        self,
        batch: dict[str, list[_Running]],
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
            again: list[_Running] = []
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
                self._ack_retry.setdefault(type_, []).extend(again)
                failed.append((type_, error, len(again)))
            self.processed += acked
            if acked:
                _tracing.count(_tracing.PROCESSED, type_, acked)
        if failed:
            self._ack_failures += 1
            delay = _error_backoff(self._ack_failures)
            self._ack_retry_at = time.monotonic() + delay
            for type_, error, n in failed:
                logger.warning(
                    "streamq.job.ack_failed",
                    job_type=type_,
                    error=error,
                    count=n,
                    retry_in=round(delay, 2),
                )
            self._ack_wake.set()
        elif batch:
            self._ack_failures = 0
        self._slot_freed.set()

    async def _lease_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.heartbeat)
            if self._closing.is_set():
                return
            async with self._pel_lock:
                await self._refresh_leases()
            try:
                await self._beat()
                await self._sample_queues()
            except BackendError as exc:
                logger.warning("streamq.worker.heartbeat_failed", error=str(exc))

    async def _refresh_leases(self) -> None:
        """Refresh the lease of every job held, type by type. A type whose refresh fails (its
        stream broken, its node down) is logged and skipped: the other types' jobs keep their
        leases, or they would be taken over and run twice."""
        by_type: dict[str, list[_Running]] = {}
        for r in self._running.values():
            by_type.setdefault(r.delivery.type, []).append(r)
        for type_, runs in by_type.items():
            ids = [r.delivery.entry_id for r in runs]
            try:
                lost = set(await self._backend.refresh(type_, self.consumer, ids))
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

    async def _sample_queues(self) -> None:
        """Refresh what the in-flight and waiting gauges report for the served types."""
        for type_ in self._types:
            raw = await self._backend.stats(type_)
            self._sampled[type_] = (raw.pending, max(0, raw.length - raw.pending))

    def _gauge_values(self) -> list[tuple[str, int, int]]:
        return [(t, in_flight, waiting) for t, (in_flight, waiting) in self._sampled.items()]

    async def _beat(self) -> None:
        info = {
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "types": ",".join(self._types),
            "concurrency": str(self.concurrency),
            "in_flight": str(len(self._running)),
            "processed": str(self.processed),
            "started_at": f"{self.started_at:.3f}",
            "heartbeat_at": f"{time.time():.3f}",
        }
        await self._backend.heartbeat(self.consumer, info, ttl_s=self.heartbeat * 3)

    async def _recover_loop(self) -> None:
        interval = min(max(self.claim_after / 4, 0.05), 10.0)
        claim_ms = int(self.claim_after * 1000)
        cursors = dict.fromkeys(self._types, "0-0")
        failures = 0
        while not self._stopping.is_set():
            wait = interval
            if self._retry_due:
                wait = min(wait, max(0.0, self._retry_due[0][0] - time.monotonic()))
            if wait > 0:
                self._recover_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recover_wake.wait(), wait)
            if self._stopping.is_set():
                return
            try:
                await self._claim_due_retries(interval, claim_ms)
                # The cursor only ever walks on (retries are claimed by id above), so that in a
                # failure storm entries deep in the PEL, a dead worker's, are still reached:
                # XAUTOCLAIM looks at no more than 10 x COUNT entries per call.
                for type_ in self._types:
                    free = self.concurrency - len(self._running)
                    if free <= 0:
                        break
                    claimed = await self._backend.claim_idle(
                        type_, self.consumer, claim_ms, free, cursors[type_]
                    )
                    cursors[type_] = claimed.cursor
                    self._start_claimed(type_, claimed)
                failures = 0
            except BackendError as exc:
                failures += 1
                await self._pause_after_error("recover", exc, failures)

    async def _claim_due_retries(self, interval: float, claim_ms: int) -> None:
        """Claim the retries of ours that are due, by id, as many as there are free slots; the
        others are tried again at the next pass (another worker may take them first)."""
        now = time.monotonic() + 0.001
        due: dict[str, list[str]] = {}
        later: list[tuple[float, str, str]] = []
        free = self.concurrency - len(self._running)
        while self._retry_due and self._retry_due[0][0] <= now:
            _, type_, entry_id = heapq.heappop(self._retry_due)
            if free > 0:
                due.setdefault(type_, []).append(entry_id)
                free -= 1
            else:
                later.append((now + interval, type_, entry_id))
        for item in later:
            heapq.heappush(self._retry_due, item)
        batches = list(due.items())
        for i, (type_, ids) in enumerate(batches):
            try:
                claimed = await self._backend.claim(type_, self.consumer, ids, claim_ms)
            except BackendError:
                # Still idle in the PEL: claimable at the next pass, here or elsewhere.
                for t, rest in batches[i:]:
                    for entry_id in rest:
                        heapq.heappush(self._retry_due, (now + interval, t, entry_id))
                raise
            self._start_claimed(type_, claimed)

    def _start_claimed(self, type_: str, claimed: Claimed) -> None:
        for entry_id in claimed.deleted:
            logger.warning("streamq.job.vanished", job_type=type_, entry_id=entry_id)
        fresh = []
        for d in claimed.deliveries:
            if (type_, d.entry_id) in self._running:
                # Still running here: its lease lapsed (a blocked loop?) and this pass took it
                # back. One run is enough; its ack will succeed.
                logger.warning("streamq.job.lease_reclaimed", job_type=type_, entry_id=d.entry_id)
                continue
            fresh.append(d)
        self._start(fresh)

    async def _leave_groups(self) -> None:
        """A clean exit takes this consumer's name out of each group, so consumer lists do not
        grow with every restart. What it still holds (handed back, retries waiting) passes to
        the hand-back consumer as it is, claimable when it would have been."""
        for type_ in self._types:
            try:
                await self._backend.remove_consumer(type_, self.consumer, hand_over=True)
            except BackendError as exc:
                logger.warning("streamq.worker.leave_failed", error=str(exc), job_type=type_)

    async def _release_unfinished(self) -> None:
        """Entries still held at exit become claimable by another worker at once; the delivery
        the stop interrupted does not count towards max_deliveries."""
        by_type: dict[str, list[str]] = {}
        for r in self._running.values():
            by_type.setdefault(r.delivery.type, []).append(r.delivery.entry_id)
        for type_, ids in by_type.items():
            try:
                await self._backend.release(type_, self.consumer, ids, int(self.claim_after * 1000))
            except BackendError as exc:
                logger.warning("streamq.worker.release_failed", error=str(exc), count=len(ids))
        self._running.clear()
