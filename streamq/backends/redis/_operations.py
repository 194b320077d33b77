"""The part of the RedisBackend facade that inspects and controls: stats, pending, dead
letters, a job's lookup, workers, periodic ticks, cancelling and pausing. Each call hands over
to the module that owns its concern; :class:`~streamq.backends.redis._backend.RedisBackend`
makes those parts and inherits these calls (kept apart so neither file outgrows a reader)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streamq.backends._base import (
    CancelResult,
    DeadEntry,
    Fields,
    JobEnd,
    JobLocation,
    PauseRecord,
    PendingEntry,
    RawStats,
)
from streamq.backends._flow_base import Admission, FlowRule, KeyLoad, Verdict
from streamq.backends.redis._cancel import Canceller
from streamq.backends.redis._find import Finder
from streamq.backends.redis._flow import FlowCalls
from streamq.backends.redis._inspect import Inspector
from streamq.backends.redis._pauses import Pauses
from streamq.backends.redis._ticks import Ticks


class Operations:
    """Inspection and control calls of the Redis backend (made by ``RedisBackend``)."""

    _inspector: Inspector
    _finder: Finder
    _ticks: Ticks
    _canceller: Canceller
    _pauses: Pauses
    _flow: FlowCalls

    # inspecting ---------------------------------------------------------------------------

    async def stats(self, type: str) -> RawStats:
        """Lengths, PEL summary, consumers and counters, summed over the partitions."""
        return await self._inspector.stats(type)

    async def pending(
        self, type: str, *, consumer: str | None, min_idle_ms: int, limit: int
    ) -> list[PendingEntry]:
        """The PEL, oldest entries first, over all partitions."""
        return await self._inspector.pending(
            type, consumer=consumer, min_idle_ms=min_idle_ms, limit=limit
        )

    async def fetch(self, type: str, entry_ids: Sequence[str]) -> dict[str, Fields]:
        """Fields of live entries."""
        return await self._inspector.fetch(type, entry_ids)

    async def requeue(self, type: str, entry_ids: Sequence[str], min_idle_ms: int) -> list[str]:
        """Move stuck entries to the end of the stream as new ones."""
        return await self._inspector.requeue(type, entry_ids, min_idle_ms)

    async def types(self) -> list[str]:
        """The job types that have keys under this prefix."""
        return await self._inspector.types()

    async def dead_list(self, type: str, limit: int) -> list[DeadEntry]:
        """The oldest ``limit`` dead letters (over all partitions)."""
        return await self._inspector.dead_list(type, limit)

    async def dead_retry(self, type: str, dead_ids: Sequence[str]) -> list[str]:
        """Re-drive dead letters as new entries; returns the dead ids re-driven."""
        return await self._inspector.dead_retry(type, dead_ids)

    async def dead_purge(self, type: str) -> int:
        """Drop the dead stream(s); returns how many entries they held."""
        return await self._inspector.dead_purge(type)

    async def find_job(self, type: str, job_id: str) -> JobLocation:
        """Where the job is, chunk by chunk (see ``_find``)."""
        return await self._finder.find_job(type, job_id)

    async def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Write the worker's record with a TTL and list it in the workers set."""
        await self._inspector.heartbeat(worker_id, info, ttl_s)

    async def remove_worker(self, worker_id: str) -> None:
        """Delete the worker's record."""
        await self._inspector.remove_worker(worker_id)

    async def workers(self) -> list[dict[str, str]]:
        """Records of workers whose heartbeat has not expired."""
        return await self._inspector.workers()

    async def fire_tick(self, type: str, schedule: str, tick_ms: int, fields: Fields) -> bool:
        """See :meth:`Backend.fire_tick` (``_ticks``)."""
        return await self._ticks.fire_tick(type, schedule, tick_ms, fields)

    async def last_ticks(self, type: str, schedules: Sequence[str]) -> dict[str, int | None]:
        """See :meth:`Backend.last_ticks` (``_ticks``)."""
        return await self._ticks.last_ticks(type, schedules)

    async def cancel(self, type: str, job_id: str) -> CancelResult:
        """See :meth:`Backend.cancel` (``_cancel``: ``cancel.lua``)."""
        return await self._canceller.cancel(type, job_id)

    async def cancel_requests(self, type: str) -> set[str]:
        """See :meth:`Backend.cancel_requests` (``_cancel``)."""
        return await self._canceller.cancel_requests(type)

    async def end_cancelled(
        self, type: str, consumer: str, entry_id: str, fields: Fields, end: JobEnd | None = None
    ) -> bool:
        """See :meth:`Backend.end_cancelled` (``_cancel``)."""
        return await self._canceller.end_cancelled(type, consumer, entry_id, fields, end)

    async def pause(self, type: str, reason: str) -> bool:
        """See :meth:`Backend.pause` (``_pauses``: ``pause.lua``)."""
        return await self._pauses.pause(type, reason)

    async def resume(self, type: str) -> bool:
        """See :meth:`Backend.resume` (``_pauses``)."""
        return await self._pauses.resume(type)

    async def paused(self, types: Sequence[str]) -> dict[str, PauseRecord]:
        """See :meth:`Backend.paused` (``_pauses``)."""
        return await self._pauses.paused(types)

    async def eviction_policy(self) -> str | None:
        """The servers' ``maxmemory-policy`` (see :meth:`Inspector.eviction_policy`)."""
        return await self._inspector.eviction_policy()

    # flow control (docs/flow-control.md) ------------------------------------------------------

    async def admit(self, type: str, asks: Sequence[Admission], rule: FlowRule) -> list[Verdict]:
        """Slots for deliveries, or holds (``admit.lua``)."""
        return await self._flow.admit(type, asks, rule)

    async def free(self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule) -> int:
        """Slots given back, held jobs woken (``flow_free.lua``)."""
        return await self._flow.free(type, slots, rule)

    async def refresh_slots(
        self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule
    ) -> None:
        """Slots' leases renewed (``flow_refresh.lua``)."""
        await self._flow.refresh_slots(type, slots, rule)

    async def wake_held(self, type: str, rule: FlowRule) -> int:
        """Expired slots dropped, held jobs woken where there is room."""
        return await self._flow.wake_held(type, rule)

    async def flow_keys(self, type: str, limit: int) -> list[KeyLoad]:
        """The busiest key values of a type with a per-key limit."""
        return await self._flow.flow_keys(type, limit)
