"""The control half of the Backend protocol: periodic ticks, pausing and cancelling
(docs/control.md, docs/schedules.md). Part of :class:`~streamq.backends._base.Backend`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streamq.backends._records import CancelResult, Fields, JobEnd, PauseRecord


class Control(Protocol):
    """Ticks, pauses and cancels: what the CLI's control commands and the worker's watchers
    call."""

    async def fire_tick(self, type: str, schedule: str, tick_ms: int, fields: Fields) -> bool:
        """Enqueue ``fields`` as the job of ``schedule``'s tick at ``tick_ms`` unless that
        tick (or a later one) already fired: the marker and the append are one atomic step,
        so of any number of workers exactly one fires a tick. True when this call fired it."""
        ...

    async def last_ticks(self, type: str, schedules: Sequence[str]) -> dict[str, int | None]:
        """The time (epoch ms) of each schedule's last fired tick, None when none fired."""
        ...

    async def pause(self, type: str, reason: str) -> bool:
        """Mark ``type`` paused: its workers stop taking its jobs (they poll :meth:`paused`).
        Records the server's time and ``reason``. False, and the record kept as it was, when
        the type is paused already. A type with no stream yet can be paused (it is listed by
        :meth:`types` from then on)."""
        ...

    async def resume(self, type: str) -> bool:
        """Clear ``type``'s paused mark; False when it was not paused."""
        ...

    async def paused(self, types: Sequence[str]) -> dict[str, PauseRecord]:
        """The paused ones of ``types``, with their records, in one round trip (on a cluster,
        one per node, all at once): what every worker polls."""
        ...

    async def cancel(self, type: str, job_id: str) -> CancelResult:
        """Cancel the job ``job_id`` of ``type`` (docs/control.md): a scheduled or waiting job
        is removed, its unique key released and its step progress deleted, counted
        ``cancelled`` and recorded as cancelled for :data:`ENDED_KEEP_MS`, all in one atomic
        step; for a running job a cancel request is left for the worker that runs it (see
        :meth:`cancel_requests`, :meth:`end_cancelled`)."""
        ...

    async def cancel_requests(self, type: str) -> set[str]:
        """The job ids of ``type`` with a cancel request waiting (requests older than
        :data:`CANCEL_KEEP_MS` are dropped): what a worker running jobs of the type polls."""
        ...

    async def end_cancelled(
        self, type: str, consumer: str, entry_id: str, fields: Fields, end: JobEnd | None = None
    ) -> bool:
        """End a running job that was cancelled, if ``consumer`` still owns its entry: ack and
        delete it, release its unique key, do its end-of-job clean-up, clear its cancel
        request, count it ``cancelled`` and record it as cancelled; False (nothing changed)
        when the entry is not this consumer's."""
        ...
