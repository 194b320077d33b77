"""What the backends hand back and take: the fields of an entry streamq writes, and the small
records of the Backend protocol (:mod:`streamq.backends._base`, which re-exports them all)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

#: A stream entry's fields, as the backends store them and the codec encodes a job into.
Fields = dict[bytes, bytes]

# The field names of an entry streamq writes (the codec fills them; a backend reads the id, and
# the body for a partition key, without decoding the job).
F_ID = b"id"
F_VERSION = b"v"
F_BODY = b"job"
# Written beside them when they apply (a backend reads none of them but to carry them over):
# the deliveries before this entry and the last one's error (a retry that waited in the
# schedule: the retry scripts), and the deadline, in ms since the epoch (``enqueue(expires=)``).
F_DELIVERIES = b"deliveries"
F_ERROR = b"last_error"
F_EXPIRES = b"expires"
# A unique job's key (``enqueue(unique_key=)``) and how long, in ms, the key outlives the job
# (``unique_for``; absent: released when the job ends).
F_UNIQUE = b"unique"
F_UNIQUE_FOR = b"unique_for"
# A job's priority level when it is not ``default`` (``enqueue(priority=)``): which of its
# type's level streams it waits on; a default job has no such field (see ``_priority``).
F_PRIORITY = b"priority"
#: The fields a dead job's retry drops (a fresh start: deliveries, last error and deadline).
FRESH_START_DROPS = (F_DELIVERIES, F_ERROR, F_EXPIRES)


def job_id_of(fields: Mapping[bytes, bytes]) -> str | None:
    """The job id of an entry, if it has a readable one (poison included)."""
    raw = fields.get(F_ID)
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


#: Counter names kept per type.
COUNTERS = ("enqueued", "processed", "failed", "retried", "dead", "cancelled")

#: The consumer that holds what a leaving worker handed back, until another worker claims it
#: (so the leaving worker's own name can be removed from the group at once).
HANDED_BACK = "(handed-back)"


@dataclass(slots=True)
class Delivery:
    """One entry handed to a consumer (new, or claimed back from the PEL).

    Not frozen: one is made per delivery, and a frozen dataclass's ``__init__`` costs several
    times more (benchmarks/README.md, "The Redis backend"). Nothing changes one after the
    backend made it.
    """

    type: str
    entry_id: str
    fields: Fields
    deliveries: int
    #: claimed back from the PEL by a recovery pass (:class:`Redelivery`), not read new: it
    #: may have run before even when its count says 1 (a shutdown hand-back takes a delivery
    #: back). A class attribute, so the read path stores nothing more per delivery.
    claimed: ClassVar[bool] = False


class Redelivery(Delivery):
    """A delivery the worker's recovery pass claimed (see :attr:`Delivery.claimed`)."""

    __slots__ = ()
    claimed = True


@dataclass(frozen=True, slots=True)
class StepProgress:
    """The step progress a job with several steps recorded (see docs/steps.md)."""

    #: how many steps are done: the index of the next step to run
    done: int
    #: the name of that next step when it was recorded (a resume checks it still is)
    next_step: str
    #: the checkpoint saved by the steps done (JSON), empty when none was saved
    checkpoint: bytes
    #: when it was recorded, in ms since the epoch (the server's clock)
    recorded_ms: int


@dataclass(slots=True)
class JobEnd:
    """End-of-job clean-up of one entry: what the ack or the dead letter that ends its job
    deletes in the same atomic call, only when the consumer still owned the entry (an entry
    another consumer holds now is that consumer's to end).

    Given only for deliveries that have something to clean up; a plain job's ack carries none
    and costs what it did. Each flag names one thing kept per job until its end. Not frozen:
    with finished-job records one is made per job (see :class:`Delivery`); nothing changes one
    after it is made.
    """

    entry_id: str
    job_id: str
    #: the job's step progress (a type with more than one step)
    progress: bool = False
    #: what the job's finished-job record says (an ack with :class:`KeepDone`): how long its
    #: last delivery ran, in ms, and its deliveries
    took_ms: int = 0
    deliveries: int = 0


#: How long a finished job's record is kept by default (``Worker(keep_done=)``): a day.
KEEP_DONE_MS = 24 * 3600 * 1000

#: The most finished jobs' records kept per type by default (``Worker(keep_done_max=)``).
KEEP_DONE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class KeepDone:
    """How finished jobs' records are kept (``Worker(keep_done=, keep_done_max=)``): an ack
    given one writes each acked job's record (:class:`Ended` ``done``) in the same atomic call,
    and drops the records older than ``ms`` or beyond the ``most`` newest of the type."""

    #: how long a record is kept, in ms (positive: no KeepDone at all means no records)
    ms: int
    #: the most records kept per type (the oldest go first)
    most: int


@dataclass(slots=True)
class AckedRead:
    """The answer of :meth:`Backend.ack_and_read`."""

    #: per type, the ids not acknowledged because another consumer owns them now
    lost: dict[str, list[str]]
    #: per type, why its ack failed (its ids stay pending, to be recovered)
    failed: dict[str, str]
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class Claimed:
    """The answer of one recovery pass (XAUTOCLAIM)."""

    cursor: str
    deliveries: list[Delivery]
    deleted: list[str]


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One entry of the PEL: a job in flight (or awaiting its retry)."""

    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int
    #: the job's priority level (``high``, ``default``, ``low``)
    priority: str = "default"


@dataclass(frozen=True, slots=True)
class RawStats:
    """What the backend knows about one type, before the queue shapes it."""

    length: int
    pending: int
    #: consumer name -> (entries it holds, ms since it last read or claimed)
    consumers_detail: dict[str, tuple[int, int]]
    #: age (now - enqueue time, from the entry id) of the oldest entry in the PEL
    oldest_pending_age_ms: int | None
    dead: int
    counters: dict[str, int]
    consumers: int
    #: jobs in the type's schedule, waiting for their due time
    scheduled: int = 0
    #: jobs held back by the type's flow control (docs/flow-control.md)
    held: int = 0
    #: per priority level, the jobs waiting (empty for a type never given a priority)
    waiting_by_priority: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    """One job waiting in a type's schedule for its due time."""

    job_id: str | None
    #: when it is due, in ms since the epoch (by the server's clock)
    due_ms: int
    #: ms from now (the server's clock) until it is due; negative once overdue
    due_in_ms: int
    #: why it waits: ``delay`` (enqueued with a delay or a time) or ``retry`` (it failed)
    why: str
    #: its deliveries so far (0 for a delayed job)
    deliveries: int
    fields: Fields = field(repr=False)
    #: the last delivery's error (a retry)
    error: str = ""

    @classmethod
    def of(cls, fields: Fields, due_ms: int, now_ms: int) -> ScheduledEntry:
        """The entry of a job with ``fields`` due at ``due_ms``, seen at ``now_ms``."""
        job_id, due_in_ms = job_id_of(fields), due_ms - now_ms
        if F_DELIVERIES not in fields:
            return cls(job_id, due_ms, due_in_ms, "delay", 0, fields)
        error = fields.get(F_ERROR, b"").decode(errors="replace")
        return cls(job_id, due_ms, due_in_ms, "retry", prior_deliveries(fields), fields, error)


def prior_deliveries(fields: Mapping[bytes, bytes]) -> int:
    """The deliveries a job had before its entry (a retry that waited in the schedule)."""
    raw = fields.get(F_DELIVERIES)
    if raw is None:
        return 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """One dead-lettered job: the original fields and why it died."""

    dead_id: str
    job_id: str | None
    reason: str
    error: str
    deliveries: int
    entry_id: str
    dead_at: float
    fields: Fields = field(repr=False)


@dataclass(frozen=True, slots=True)
class InSchedule:
    """:meth:`Backend.find_job`: the job waits in a schedule (delayed, or a retry's backoff)."""

    entry: ScheduledEntry
    #: the schedule member as stored (what a cancel removes); b"" where the store has none
    member: bytes = field(default=b"", repr=False)
    #: which of the type's streams' schedules holds it, its partition or level stream
    #: (None: the type has one stream)
    part: int | None = None


@dataclass(frozen=True, slots=True)
class InStream:
    """:meth:`Backend.find_job`: the job is an entry of a stream, delivered and not acked
    (``pending``: its PEL row) or not delivered yet (``pending`` None)."""

    #: as callers see it (``ID@P`` on a partitioned type)
    entry_id: str
    fields: Fields = field(repr=False)
    pending: PendingEntry | None = None


@dataclass(frozen=True, slots=True)
class InDead:
    """:meth:`Backend.find_job`: the job is in a dead stream."""

    entry: DeadEntry


@dataclass(frozen=True, slots=True)
class NotFound:
    """:meth:`Backend.find_job`: the job is nowhere the backend looked."""

    #: False when jobs of the type kept moving into the schedule or the dead stream through
    #: every re-check (docs/job-state.md): one that moved just then may have been missed
    settled: bool = True


@dataclass(frozen=True, slots=True)
class Ended:
    """:meth:`Backend.find_job`: the job is over and left a record: a cancelled job's (kept
    :data:`ENDED_KEEP_MS`) or a finished one's (``done``, kept as its worker's
    :class:`KeepDone` says)."""

    #: ``cancelled`` or ``done``
    state: str
    #: when it ended, in ms since the epoch (by the server's clock)
    at_ms: int
    #: done: how long its last delivery ran (ms), its deliveries, the consumer that acked it
    took_ms: int | None = None
    deliveries: int | None = None
    consumer: str | None = None

    @classmethod
    def done_of(cls, record: str) -> Ended:
        """A finished job's record as stored (``AT_MS TOOK_MS DELIVERIES CONSUMER``)."""
        at, took, deliveries, consumer = [*record.split(" ", 3), "", "", ""][:4]
        try:
            return cls("done", int(at), int(took), int(deliveries), consumer or None)
        except ValueError:
            return cls("done", 0)


#: Where :meth:`Backend.find_job` found a job.
JobLocation = InSchedule | InStream | InDead | Ended | NotFound

#: How long a cancelled job's record is kept (a day): ``streamq job`` answers ``cancelled``
#: rather than ``unknown`` for that long.
ENDED_KEEP_MS = 24 * 3600 * 1000

#: How long a cancel request for a running job waits for the worker that runs it to act on it
#: (a week: a job failing after the cancel may wait in the schedule as a retry meanwhile).
CANCEL_KEEP_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What :meth:`Backend.cancel` did.

    ``state``: ``cancelled`` (it was scheduled or waiting: removed now, recorded as
    cancelled; ``already`` when an earlier cancel did it), ``cancelling`` (it is running on
    ``consumer``: a cancel request is recorded, and that worker cancels it within about a
    second), ``dead`` (it is in the dead stream: nothing to cancel), ``done`` (it finished:
    its record says so; nothing to cancel) or ``unknown`` (no such job: never enqueued, or it
    finished and left no record, or its record expired).
    """

    state: str
    consumer: str = ""
    already: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why an entry is being dead-lettered."""

    reason: str
    error: str = ""
    deliveries: int = 0
    #: True when the last delivery's handler raised (it then also counts as failed).
    failed: bool = False


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """A paused job type's record: since when, and why (docs/control.md)."""

    #: when it was paused, in ms since the epoch (by the server's clock)
    since_ms: int
    #: what the pause gave as its reason ("" for none)
    reason: str = ""


def split_count(count: int, n: int, start: int) -> list[int]:
    """``count`` shared among ``n`` as evenly as it goes; the remainder goes to the ``count % n``
    places from ``start`` on (wrapping), so a caller that moves ``start`` shares it in turn."""
    base, extra = divmod(count, n)
    out = [base] * n
    for i in range(extra):
        out[(start + i) % n] += 1
    return out
