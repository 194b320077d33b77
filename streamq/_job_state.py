"""Where one job is: :class:`JobState`, and :meth:`JobLookup.job`, which finds it (a part of
:class:`~streamq._inspect.QueueInspector`, so a method of ``Queue`` and ``SyncQueue``;
docs/job-state.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from streamq import _codec
from streamq._job import Job
from streamq.backends._base import (
    F_PRIORITY,
    Backend,
    CancelResult,
    Ended,
    Fields,
    InDead,
    InSchedule,
    InStream,
    prior_deliveries,
)

#: The states :meth:`JobLookup.job` answers with. ``done`` and ``cancelled`` come from the
#: records finished and cancelled jobs leave (docs/job-state.md).
JobStateName = Literal[
    "scheduled", "waiting", "running", "retrying", "dead", "done", "cancelled", "unknown"
]


def _utc(seconds_since_epoch: float) -> datetime:
    return datetime.fromtimestamp(seconds_since_epoch, UTC)


@dataclass(frozen=True, slots=True, repr=False)
class JobState:
    """Where one job is and what it is doing (:meth:`JobLookup.job`; docs/job-state.md).

    ``state`` says which of the other fields apply; those that do not are None.
    """

    state: JobStateName
    type: str
    job_id: str
    #: the job (its identity's ``repr`` masks the user); None when unknown or undecodable
    job: Job[Any] | None = None
    #: when it was enqueued (by the producer's clock), from its envelope
    enqueued_at: datetime | None = None
    #: waiting, running: its stream entry's id; dead: the id it had when it died
    entry_id: str | None = None
    #: times it has been delivered (read or claimed), the deliveries before a retry included
    deliveries: int | None = None
    #: scheduled: when it is due; retrying: when its next attempt is due (server's clock)
    due_at: datetime | None = None
    #: seconds until ``due_at`` (negative once due, until a worker moves it)
    due_in_s: float | None = None
    #: running: the consumer (worker) that holds it; done: the one that acked it
    consumer: str | None = None
    #: running: seconds since it was delivered or its lease last refreshed
    idle_s: float | None = None
    #: running: the step it is running (its index, 0 for the first); retrying: the step its
    #: retry starts at. From the job's step progress (docs/steps.md): 0 when none is recorded
    step: int | None = None
    #: running, retrying: that step's name, when the job's step progress names it
    step_name: str | None = None
    #: retrying, dead: the last delivery's error (``ExceptionType: message``; "" for none)
    last_error: str | None = None
    #: dead: why it was dead-lettered
    reason: str | None = None
    #: dead: its entry's id in the dead stream
    dead_id: str | None = None
    #: dead: when it died (the worker's clock)
    dead_at: datetime | None = None
    #: done: when it finished (acked); cancelled: when it was cancelled (the server's clock)
    ended_at: datetime | None = None
    #: done: how long its last delivery ran, in seconds (from its start to its outcome, by
    #: the worker's clock)
    duration_s: float | None = None
    #: unknown: False when jobs kept moving while it was looked for (ask again)
    settled: bool = True
    #: the entry's fields as stored (what the job summary is made from)
    fields: Fields = field(default_factory=dict, repr=False)

    @property
    def priority(self) -> str | None:
        """Its priority level (``high``, ``default``, ``low``), from its fields; None when
        none are known (unknown, done, cancelled)."""
        if not self.fields:
            return None
        return self.fields.get(F_PRIORITY, b"default").decode(errors="replace")

    def __repr__(self) -> str:
        # Only what applies to the state: a JobState shows a dozen Nones otherwise.
        shown = [
            f"{name}={getattr(self, name)!r}"
            for name in self.__dataclass_fields__
            if name != "fields" and (name in ("state", "type", "job_id") or _applies(self, name))
        ]
        return f"JobState({', '.join(shown)})"


def _applies(state: JobState, name: str) -> bool:
    value = getattr(state, name)
    return value is not None and not (name == "settled" and value)


def _job_of(fields: Fields) -> tuple[Job[Any] | None, datetime | None]:
    try:
        envelope = _codec.decode(fields)
    except Exception:  # poison: shown as undecodable, never raised at the caller
        return None, None
    at = envelope.enqueued_at
    return envelope.job, _utc(at) if at else None


class JobLookup:
    """``Queue.job``: where one job is, from what the backend holds."""

    backend: Backend

    async def job(self, type: str, job_id: str) -> JobState:
        """Where the job ``job_id`` of ``type`` is and what it is doing: ``scheduled``,
        ``waiting``, ``running``, ``retrying``, ``dead``, ``done`` (finished: its record is kept
        as long as its worker's ``keep_done`` says, 24 h by default), ``cancelled`` (for a
        day), or ``unknown`` (never seen, or its record expired).

        The server keeps no index from job ids to entries: this walks the type's streams, in
        calls of a bounded size (about 1.5 ms of the server's time for 1000 entries; a stream
        of 100 000 jobs takes some 150 ms in all: docs/job-state.md).
        """
        found = await self.backend.find_job(type, job_id)
        if isinstance(found, InStream):
            job, enqueued_at = _job_of(found.fields)
            p = found.pending
            prior = prior_deliveries(found.fields)
            step, step_name = (
                (None, None) if p is None else await self._step_of(type, job_id, found.entry_id)
            )
            return JobState(
                "waiting" if p is None else "running",
                type,
                job_id,
                job=job,
                enqueued_at=enqueued_at,
                entry_id=found.entry_id,
                deliveries=prior if p is None else p.deliveries + prior,
                consumer=None if p is None else p.consumer,
                idle_s=None if p is None else p.idle_ms / 1000,
                step=step,
                step_name=step_name,
                fields=found.fields,
            )
        if isinstance(found, InSchedule):
            e = found.entry
            job, enqueued_at = _job_of(e.fields)
            retry = e.why == "retry"
            step, step_name = await self._step_of(type, job_id) if retry else (None, None)
            return JobState(
                "retrying" if retry else "scheduled",
                type,
                job_id,
                job=job,
                enqueued_at=enqueued_at,
                deliveries=e.deliveries,
                due_at=_utc(e.due_ms / 1000),
                due_in_s=e.due_in_ms / 1000,
                last_error=e.error if retry else None,
                step=step,
                step_name=step_name,
                fields=e.fields,
            )
        if isinstance(found, InDead):
            d = found.entry
            job, enqueued_at = _job_of(d.fields)
            return JobState(
                "dead",
                type,
                job_id,
                job=job,
                enqueued_at=enqueued_at,
                entry_id=d.entry_id,
                deliveries=d.deliveries,
                last_error=d.error,
                reason=d.reason,
                dead_id=d.dead_id,
                dead_at=_utc(d.dead_at),
                fields=d.fields,
            )
        if isinstance(found, Ended):
            ended_at = _utc(found.at_ms / 1000) if found.at_ms else None
            if found.state == "done":
                return JobState(
                    "done",
                    type,
                    job_id,
                    ended_at=ended_at,
                    duration_s=None if found.took_ms is None else found.took_ms / 1000,
                    deliveries=found.deliveries,
                    consumer=found.consumer,
                )
            return JobState("cancelled", type, job_id, ended_at=ended_at)
        return JobState("unknown", type, job_id, settled=found.settled)

    async def cancel(self, type: str, job_id: str) -> CancelResult:
        """Cancel the job ``job_id`` of ``type`` (docs/control.md).

        A scheduled or waiting job is removed at once (``state`` ``cancelled``): its unique key
        is released, it is counted ``cancelled`` and ``job()`` answers ``cancelled`` for a day.
        A running job (``cancelling``, with its ``consumer``) is cancelled by the worker running
        it within about a second: its task is cancelled at its next ``await``, and a step that
        takes a JobContext sees ``ctx.cancelled`` set (what a sync step polls); it is then
        acknowledged (not retried, not dead-lettered) and recorded as cancelled. A dead job
        (``dead``), a finished one (``done``: its record says so) or one the backend has no
        trace of (``unknown``: never enqueued, or its record expired) is left as it is.
        """
        return await self.backend.cancel(type, job_id)

    async def _step_of(
        self, type: str, job_id: str, entry_id: str | None = None
    ) -> tuple[int, str | None]:
        """The step a job is at (running) or starts at (retrying), and its name: from its step
        progress, the first step (0, its name unknown here) when it has none."""
        progress = await self.backend.job_progress(type, job_id, entry_id=entry_id)
        if progress is None:
            return 0, None
        return progress.done, progress.next_step or None
