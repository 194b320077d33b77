"""The Backend protocol: the one contract the worker and the queue depend on.

A backend stores, per job type, a stream of live jobs read through one consumer group, that
group's pending-entries list (PEL: which consumer holds which entry, since when, how many times
delivered), a capped dead stream, and counters. Every method that changes more than one of these
does so atomically. Entry ids are strings (``"1700000000000-0"``); job fields are the codec's
``dict[bytes, bytes]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from streamq.backends._control_base import Control
from streamq.backends._flow_base import FlowControl
from streamq.backends._records import (
    CANCEL_KEEP_MS,
    COUNTERS,
    ENDED_KEEP_MS,
    F_BODY,
    F_DELIVERIES,
    F_ERROR,
    F_EXPIRES,
    F_ID,
    F_PRIORITY,
    F_UNIQUE,
    F_UNIQUE_FOR,
    F_VERSION,
    FRESH_START_DROPS,
    HANDED_BACK,
    KEEP_DONE_MAX,
    KEEP_DONE_MS,
    AckedRead,
    CancelResult,
    Claimed,
    DeadEntry,
    DeadLetter,
    Delivery,
    Ended,
    Fields,
    InDead,
    InSchedule,
    InStream,
    JobEnd,
    JobLocation,
    KeepDone,
    NotFound,
    PauseRecord,
    PendingEntry,
    RawStats,
    Redelivery,
    ScheduledEntry,
    StepProgress,
    job_id_of,
    prior_deliveries,
    split_count,
)

__all__ = [
    "AckedRead",
    "CANCEL_KEEP_MS",
    "COUNTERS",
    "CancelResult",
    "Claimed",
    "ENDED_KEEP_MS",
    "Ended",
    "DeadEntry",
    "DeadLetter",
    "Delivery",
    "FRESH_START_DROPS",
    "Fields",
    "F_BODY",
    "F_DELIVERIES",
    "F_ERROR",
    "F_EXPIRES",
    "F_ID",
    "F_PRIORITY",
    "F_UNIQUE",
    "F_UNIQUE_FOR",
    "F_VERSION",
    "HANDED_BACK",
    "InDead",
    "InSchedule",
    "InStream",
    "JobEnd",
    "JobLocation",
    "KEEP_DONE_MAX",
    "KEEP_DONE_MS",
    "KeepDone",
    "NotFound",
    "PauseRecord",
    "PendingEntry",
    "RawStats",
    "Redelivery",
    "ScheduledEntry",
    "StepProgress",
    "job_id_of",
    "prior_deliveries",
    "split_count",
    "Backend",
]


class Backend(Control, FlowControl, Protocol):
    """Storage for streams of jobs; implemented by RedisBackend and MemoryBackend."""

    async def ensure_groups(self, types: Sequence[str]) -> None:
        """Create each type's stream and consumer group (from id 0) if missing."""

    async def enqueue(self, type: str, fields: Fields) -> str:
        """Append one job; returns its entry id. Counts it as enqueued."""

    async def enqueue_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """Append many jobs in one round trip; returns their entry ids in order."""

    async def schedule_many(self, items: Sequence[tuple[str, Fields]], delay_ms: int) -> None:
        """Put jobs in their types' schedules (the stream, or partition, each would go to now),
        due ``delay_ms`` from now by the server's clock. Counts them as enqueued."""

    async def enqueue_unique(
        self, type: str, fields: Fields, key: str, *, delay_ms: int, ttl_ms: int
    ) -> tuple[str, bool]:
        """Enqueue one job (for now, or ``delay_ms`` from now into the schedule) unless a job
        holds ``key``: the check, the key and the write are one atomic step. The key holds the
        job id (``fields[F_ID]``) until the job ends (see :meth:`finish`, :meth:`dead_letter`),
        and at most ``ttl_ms`` (the bound on a key whose job vanished outside streamq).

        Returns the id of the job holding the key and whether this call created it (False: a
        duplicate, nothing written).
        """

    async def finish(
        self,
        type: str,
        consumer: str,
        jobs: Sequence[tuple[str, Fields]],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """:meth:`ack` for entries that need more at their end, given as (entry id, fields): a
        unique job's key is released (or kept ``unique_for`` more) if it still names the job,
        in the same atomic step as its ack. ``ends``: the end-of-job clean-up of those that
        have one (all of them, or none), and with ``keep`` their records, as :meth:`ack` does
        it. Returns the ids not owned (left unchanged)."""

    async def move_due(self, types: Sequence[str], limit: int) -> int:
        """Append the due jobs of each type's schedules to their streams, at most ``limit`` per
        stream, atomically per stream (two callers never move one job twice). Returns how many
        moved."""

    async def scheduled(self, type: str, limit: int) -> list[ScheduledEntry]:
        """The jobs in the type's schedules, the soonest due first (at most ``limit``)."""

    async def read(
        self,
        types: Sequence[str],
        consumer: str,
        count: int,
        block_ms: int,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Deliver up to ``count`` new entries in all, ``count`` shared among the types (see
        :func:`split_count`; XREADGROUP's own COUNT applies to each stream, so a backend splits it
        itself); block up to ``block_ms`` when there are none.

        ``shares``: when given, how many to ask of each type instead (its counts add up to
        ``count``; a type of ``types`` not in it gets none). A worker with per-type caps
        shares out its free slots itself (``streamq._worker.type_caps``)."""

    async def claim_idle(
        self, type: str, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """Claim up to ``count`` entries idle at least ``min_idle_ms``, scanning from ``cursor``.

        Claiming counts as a delivery. Entries deleted from the stream but still in the PEL are
        dropped from it and returned in ``deleted``.
        """

    async def ack(
        self,
        type: str,
        consumer: str,
        entry_ids: Sequence[str],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Acknowledge and delete the entries ``consumer`` still owns; count them processed.
        With ``ends`` (some of those entries), their end-of-job clean-up goes with the ack,
        in the same atomic call, for the entries really acked (:class:`JobEnd`). With ``keep``
        (and then one end per entry, its record's figures in it), each acked job's finished-job
        record is written in that call too, and the records past ``keep`` dropped.

        Returns the ids that were *not* acknowledged because another consumer owns them now.
        """

    async def ack_and_read(
        self,
        acks: Mapping[str, Sequence[str]],
        types: Sequence[str],
        consumer: str,
        count: int,
        ends: Mapping[str, Sequence[JobEnd]] | None = None,
        keep: KeepDone | None = None,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> AckedRead:
        """:meth:`ack` the ids of each type (with the ``ends`` of that type, and ``keep``), then
        :meth:`read` without blocking (with its ``shares``).

        What the worker's read loop does once its finished jobs free their slots: a backend
        that can do both in one round trip should. A failed ack of one type does not lose the
        read: it is reported in ``failed``. Raises BackendError only when nothing came back.
        """

    async def refresh(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Reset the idle time of the entries ``consumer`` still owns (lease heartbeat).

        Returns the ids it no longer owns.
        """

    async def retry_later(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        *,
        delay_ms: int,
        deliveries: int,
        error: str,
    ) -> int:
        """After a failed delivery: move an owned entry into its stream's schedule, due
        ``delay_ms`` from now by the server's clock, with ``deliveries`` (so far) and ``error``
        in its fields (:data:`F_DELIVERIES`, :data:`F_ERROR`); ack and delete it from the
        stream, and count failed and retried, atomically. It holds no lease while it waits;
        :meth:`move_due` puts it back in the stream when it is due, a new entry.

        Returns the due time in ms since the epoch, or 0 (and changes nothing) if ``consumer``
        no longer owns the entry.
        """

    async def release(
        self, type: str, consumer: str, entry_ids: Sequence[str], idle_ms: int
    ) -> None:
        """Hand owned entries back at shutdown: mark them idle ``idle_ms`` so another worker
        can claim them at once, and take back the delivery that was interrupted (count - 1,
        never below 0): a stop is not a failed delivery, so restarts never dead-letter a job.
        """

    async def dead_letter(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        letter: DeadLetter,
        max_dead: int,
        fields: Fields | None = None,
        end: JobEnd | None = None,
    ) -> bool:
        """Move an owned entry to the dead stream with the reason (copy, ack, delete, count).
        With the entry's ``fields`` (the worker has them), a unique job's key is released in
        the same step, as :meth:`finish` does; with ``end``, its end-of-job clean-up (its step
        progress) is done in that step too.

        Returns False (and changes nothing) if ``consumer`` no longer owns the entry.
        """

    async def record_progress(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        job_id: str,
        *,
        done: int,
        next_step: str,
        checkpoint: bytes | None,
        ttl_ms: int,
    ) -> bool:
        """Record that the job of an owned entry finished ``done`` steps (``next_step`` is the
        name of the one it runs next), atomically with the ownership check, kept ``ttl_ms``
        from now (each record starts it again). ``checkpoint``: the JSON to store with it,
        ``b""`` to drop the one stored, None to leave it as it is.

        The progress is the job's (by job id, in the stream of the entry), not the entry's: a
        retry's new entry, or another consumer's claim, finds it. It ends with the job
        (:class:`JobEnd` in the ack or the dead letter). Returns False (and records nothing)
        if ``consumer`` no longer owns the entry.
        """

    async def job_progress(
        self, type: str, job_id: str, *, entry_id: str | None = None
    ) -> StepProgress | None:
        """The step progress recorded for job ``job_id`` of ``type``, None when there is none.

        With ``entry_id`` (the job's current entry), only that entry's stream is read; without
        it, each stream of the type in turn (a partitioned type has one per partition).
        """

    async def types(self) -> list[str]:
        """Every job type that has a stream, a dead stream, counters, a schedule or a pause,
        sorted."""

    async def requeue(self, type: str, entry_ids: Sequence[str], min_idle_ms: int) -> list[str]:
        """Copy pending entries idle at least ``min_idle_ms`` to new entries (delivered to the
        next reader), then ack and delete the old ones. Returns the old ids it requeued."""

    async def remove_consumer(self, type: str, consumer: str, *, hand_over: bool = False) -> bool:
        """Delete ``consumer`` from the type's group if it holds no pending entry.

        With ``hand_over``, what it still holds first passes to :data:`HANDED_BACK`, each entry
        with its idle time and delivery count as they were (a leaving worker: its entries stay
        claimable when they would have been, and its name leaves the group now).
        """

    async def stats(self, type: str) -> RawStats:
        """Lengths, PEL summary and counters of one type."""

    async def pending(
        self, type: str, *, consumer: str | None, min_idle_ms: int, limit: int
    ) -> list[PendingEntry]:
        """The PEL of one type (optionally one consumer's, or only entries idle that long)."""

    async def fetch(self, type: str, entry_ids: Sequence[str]) -> dict[str, Fields]:
        """The fields of live entries, by entry id (missing ids are left out)."""

    async def dead_list(self, type: str, limit: int) -> list[DeadEntry]:
        """Dead-lettered jobs, oldest first."""

    async def dead_retry(self, type: str, dead_ids: Sequence[str]) -> list[str]:
        """Put dead jobs back on the job stream as new entries; returns the dead ids re-driven.

        A fresh start: the fields of :data:`FRESH_START_DROPS` (deliveries so far, last error,
        deadline) are not carried over.

        A dead id no longer in the dead stream (retried or purged meanwhile) is skipped, and
        not returned: the caller reports what this call really did.
        """

    async def dead_purge(self, type: str) -> int:
        """Delete the dead stream; returns how many entries it held."""

    async def find_job(self, type: str, job_id: str) -> JobLocation:
        """Where the job ``job_id`` of ``type`` is: its streams (waiting, or delivered and in
        the PEL), schedules or dead streams, every partition.

        A job that exists throughout the call is found even while it moves (a backend that
        cannot look everywhere at once looks in an order, and checks again, that cannot miss
        it: docs/job-state.md); a job id given to two jobs answers with the first found.
        """

    async def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Record a live worker for ``ttl_s`` seconds."""

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker's heartbeat record (clean shutdown)."""

    async def workers(self) -> list[dict[str, str]]:
        """Live workers' heartbeat records."""

    async def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy`` (``noeviction`` unless some node may evict keys;
        always ``noeviction`` on a store that never evicts, as the memory backend); None when
        the server refused to tell (an ACL)."""

    async def aclose(self) -> None:
        """Release connections."""
