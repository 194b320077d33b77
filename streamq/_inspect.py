"""Inspecting and administering queues: what the CLI and the dashboard read, and re-drive.

:class:`QueueInspector` is the base class of :class:`streamq.Queue` (as BullMQ's ``Queue``
extends its ``QueueGetters``): every method here is a method of ``Queue``, and of ``SyncQueue``
as a blocking call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from streamq import _codec, _tracing
from streamq._job_state import JobLookup
from streamq._registry import check_type_name, seconds
from streamq._schedules import Schedule
from streamq.backends._base import (
    Backend,
    DeadEntry,
    prior_deliveries,
)
from streamq.backends._flow_base import KeyLoad
from streamq.exceptions import ConfigError

#: The longest reason a pause may give (it is shown in stats and on the dashboard).
MAX_PAUSE_REASON = 200


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """One consumer of a type's group: entries it holds and seconds since it last read."""

    in_flight: int
    idle_s: float


@dataclass(frozen=True, slots=True)
class TypeStats:
    """Where the jobs of one type are, and what became of them."""

    type: str
    #: enqueued, not yet delivered to any worker
    waiting: int
    #: in the PEL: delivered and not yet acked (running, or awaiting a retry), all workers
    in_flight: int
    #: age (since enqueue) of the oldest job in flight
    oldest_in_flight_s: float | None
    #: in the dead stream now
    dead: int
    enqueued: int
    processed: int
    #: deliveries whose handler raised or timed out
    failed: int
    retried: int
    #: jobs ever dead-lettered (the dead stream is capped, and can be purged or retried)
    dead_lettered: int
    consumers: dict[str, ConsumerStats]
    #: in the schedule: enqueued with a delay, not due yet
    scheduled: int = 0
    #: paused (:meth:`QueueInspector.pause`): workers take none of its jobs until a resume
    paused: bool = False
    #: when it was paused (Unix time in seconds, by the server's clock); None when not paused
    paused_since: float | None = None
    #: the reason the pause gave ("" for none)
    pause_reason: str = ""
    #: jobs ever cancelled (:meth:`~streamq.Queue.cancel`): removed while scheduled or
    #: waiting, or ended by their worker while running
    cancelled: int = 0
    #: held back by the type's flow control (docs/flow-control.md): waiting for a slot of
    #: their key, or for their start under a rate; not counted in ``waiting``
    held: int = 0
    #: per priority level (``high``, ``default``, ``low``), the jobs waiting; empty for a type
    #: never given a priority (docs/flow-control.md, "Priorities")
    waiting_by_priority: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """One job waiting in its type's schedule."""

    job_id: str | None
    #: when it is due (UTC, by the server's clock)
    due_at: datetime
    #: seconds until it is due (negative once overdue, until a worker moves it)
    due_in_s: float
    #: why it waits: ``delay`` (enqueued with a delay or a time) or ``retry`` (it failed)
    why: str
    #: deliveries so far (0 for a job that has not run yet)
    deliveries: int
    #: the last delivery's error (a retry; "" for a delay)
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class PendingJob:
    """One job in flight (or awaiting its retry), from the PEL."""

    job_id: str | None
    entry_id: str
    consumer: str
    idle_s: float
    deliveries: int
    #: its priority level (``high``, ``default``, ``low``)
    priority: str = "default"


class QueueInspector(JobLookup):
    """Stats, jobs in flight, dead letters and workers of the queues on ``backend``.

    It owns the backend's lifetime (``aclose``, ``async with``), so a reader that never
    enqueues, such as the dashboard, needs nothing more.

    Args:
        backend: where the jobs are.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend's connections."""
        await self.backend.aclose()

    async def keys(self, job_type: str, limit: int = 10) -> list[KeyLoad]:
        """The busiest key values of a type with a per-key limit (``JobType(limit=)``): its
        jobs running and held per key, busiest first, at most ``limit``."""
        return await self.backend.flow_keys(job_type, limit)

    async def stats(self, types: Sequence[str]) -> list[TypeStats]:
        """Stats of each type, read from the server (global across all workers)."""
        out = []
        paused = await self.backend.paused(list(types)) if types else {}
        for job_type in types:
            raw = await self.backend.stats(job_type)
            counters = raw.counters
            pause = paused.get(job_type)
            out.append(
                TypeStats(
                    type=job_type,
                    waiting=max(0, raw.length - raw.pending),
                    in_flight=raw.pending,
                    oldest_in_flight_s=None
                    if raw.oldest_pending_age_ms is None
                    else raw.oldest_pending_age_ms / 1000,
                    dead=raw.dead,
                    enqueued=counters["enqueued"],
                    processed=counters["processed"],
                    failed=counters["failed"],
                    retried=counters["retried"],
                    dead_lettered=counters["dead"],
                    consumers={
                        name: ConsumerStats(n, idle / 1000)
                        for name, (n, idle) in sorted(raw.consumers_detail.items())
                    },
                    scheduled=raw.scheduled,
                    paused=pause is not None,
                    paused_since=None if pause is None else pause.since_ms / 1000,
                    pause_reason="" if pause is None else pause.reason,
                    cancelled=counters["cancelled"],
                    held=raw.held,
                    waiting_by_priority=dict(raw.waiting_by_priority),
                )
            )
        return out

    async def pause(self, type: str, *, reason: str | None = None) -> bool:
        """Pause ``type``: every worker serving it stops taking its jobs within about a second
        (new ones and a dead worker's alike) and says so in its log; the jobs it is running
        finish and are acknowledged as usual. Enqueues go on: the jobs wait (``waiting`` in
        :meth:`stats`, which shows ``paused``) until :meth:`resume`. docs/control.md.

        A type with no jobs yet can be paused (its workers start paused). Returns False, and
        keeps the first pause's time and reason, when the type is paused already.

        Raises:
            ConfigError: a bad type name, or a reason longer than :data:`MAX_PAUSE_REASON`.
        """
        check_type_name(type)
        reason = " ".join((reason or "").split())
        if len(reason) > MAX_PAUSE_REASON:
            raise ConfigError(
                f"the reason of a pause is at most {MAX_PAUSE_REASON} characters, not {len(reason)}"
            )
        return await self.backend.pause(type, reason)

    async def resume(self, type: str) -> bool:
        """Resume a paused ``type``: its workers take its jobs again within about a second.
        Returns False when it was not paused.

        Raises:
            ConfigError: a bad type name.
        """
        check_type_name(type)
        return await self.backend.resume(type)

    async def pending(
        self,
        type: str,
        *,
        consumer: str | None = None,
        min_idle: float | timedelta = 0.0,
        limit: int = 100,
        scan: int = 10_000,
    ) -> list[PendingJob]:
        """The ``limit`` jobs in flight for ``type`` idle longest, with their job ids.

        The PEL lists entries in id order, not by idle time: the first ``scan`` entries are
        read (ids and idle times only, cheap) and sorted, then the job ids of the ``limit``
        longest idle are fetched.
        """
        rows = await self.backend.pending(
            type,
            consumer=consumer,
            min_idle_ms=int(seconds(min_idle) * 1000),
            limit=max(limit, scan),
        )
        rows = sorted(rows, key=lambda r: r.idle_ms, reverse=True)[:limit]
        fields = await self.backend.fetch(type, [r.entry_id for r in rows])
        jobs = [
            PendingJob(
                job_id=_codec.job_id_of(fields.get(r.entry_id, {})),
                entry_id=r.entry_id,
                consumer=r.consumer,
                idle_s=r.idle_ms / 1000,
                # A retry that waited in the schedule is a new entry: its earlier deliveries
                # travel in its fields.
                deliveries=r.deliveries + prior_deliveries(fields.get(r.entry_id, {})),
                priority=r.priority,
            )
            for r in rows
        ]
        return sorted(jobs, key=lambda j: j.idle_s, reverse=True)

    async def scheduled(self, type: str, *, limit: int = 100) -> list[ScheduledJob]:
        """The jobs of ``type`` waiting in its schedule, the soonest due first."""
        return [
            ScheduledJob(
                job_id=e.job_id,
                due_at=datetime.fromtimestamp(e.due_ms / 1000, UTC),
                due_in_s=e.due_in_ms / 1000,
                why=e.why,
                deliveries=e.deliveries,
                last_error=e.error,
            )
            for e in await self.backend.scheduled(type, limit)
        ]

    async def types(self) -> list[str]:
        """The job types that exist on the server (a stream, dead letters or counters)."""
        return await self.backend.types()

    async def recover(
        self, type: str, *, min_idle: float | timedelta, dry_run: bool = False, limit: int = 10_000
    ) -> list[PendingJob]:
        """Hand jobs in flight for at least ``min_idle`` back for delivery now.

        Each is moved to the end of the stream as a new entry (fresh delivery count), so the
        next read of any worker gets it, without waiting for a recovery pass after claim_after.
        If the old holder is still running it, its ack finds the entry gone (a lost lease, logged)
        — the job may run twice, as at-least-once allows. Returns the jobs handed back (with
        ``dry_run``, the ones that would be).
        """
        stuck = await self.pending(type, min_idle=min_idle, limit=limit)
        if dry_run or not stuck:
            return stuck
        min_idle_ms = int(seconds(min_idle) * 1000)
        moved = set(await self.backend.requeue(type, [p.entry_id for p in stuck], min_idle_ms))
        return [p for p in stuck if p.entry_id in moved]

    async def prune_consumers(self, types: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Remove consumers that have no live worker and hold no entry; returns (type, name)."""
        live = {w["id"] for w in await self.backend.workers()}
        removed = []
        for job_type in types if types is not None else await self.types():
            raw = await self.backend.stats(job_type)
            for name, (held, _idle) in raw.consumers_detail.items():
                if (
                    name not in live
                    and held == 0
                    and await self.backend.remove_consumer(job_type, name)
                ):
                    removed.append((job_type, name))
        return removed

    async def dead(self, type: str, *, limit: int = 100) -> list[DeadEntry]:
        """Dead-lettered jobs of ``type``, oldest first."""
        return await self.backend.dead_list(type, limit)

    async def retry_dead(self, type: str, job_ids: Sequence[str] | None = None) -> list[str]:
        """Put dead jobs back (all when ``job_ids`` is None); returns the job ids re-driven.

        Only jobs this call really re-drove are returned: one retried or purged by someone else
        between the listing and the retry is not (the CLI then names it as not found).
        """
        dead = await self.backend.dead_list(type, 1_000_000)
        wanted = None if job_ids is None else set(job_ids)
        chosen = {d.dead_id: d for d in dead if wanted is None or d.job_id in wanted}
        redriven = await self.backend.dead_retry(type, list(chosen))
        if redriven:
            _tracing.count(_tracing.ENQUEUED, type, len(redriven))
        return [chosen[i].job_id or i for i in redriven if i in chosen]

    async def purge_dead(self, type: str) -> int:
        """Delete every dead letter of ``type``; returns how many."""
        return await self.backend.dead_purge(type)

    async def last_ticks(self, schedules: Sequence[Schedule]) -> dict[str, int | None]:
        """The last fired tick (epoch ms, None if none) of each schedule, by its name."""
        by_type: dict[str, list[str]] = {}
        for s in schedules:
            by_type.setdefault(s.type, []).append(s.name)
        out: dict[str, int | None] = {}
        for type_, names in by_type.items():
            out.update(await self.backend.last_ticks(type_, names))
        return out

    async def workers(self) -> list[dict[str, str]]:
        """Live workers' heartbeat records."""
        return await self.backend.workers()
