"""An in-process backend that models Redis Streams consumer-group semantics.

It is for development and unit tests: one process, no persistence. State is guarded by a
``threading.Lock`` because the sync queue runs its own event loop in a thread; a blocked
``read`` waits on an ``asyncio.Event`` of its own loop, which ``enqueue`` sets through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from streamq.backends._base import (
    F_ID,
    F_UNIQUE,
    HANDED_BACK,
    AckedRead,
    Claimed,
    DeadEntry,
    DeadLetter,
    Delivery,
    Fields,
    JobEnd,
    KeepDone,
    job_id_of,
    split_count,
)
from streamq.backends._memory_cancel import MemoryCancel
from streamq.backends._memory_flow import MemoryFlow
from streamq.backends._memory_inspect import Waiter
from streamq.backends._memory_levels import take_from, take_levels
from streamq.backends._memory_schedule import MemorySchedule
from streamq.backends._memory_stream import parse_id

__all__ = ["MemoryBackend"]


class MemoryBackend(MemorySchedule, MemoryCancel, MemoryFlow):
    """The Backend protocol in process memory, with Redis consumer-group semantics.

    Its state and the inspection half live in ``_memory_inspect``, the schedule of delayed jobs
    in ``_memory_schedule``, the step progress in ``_memory_progress``, cancelling in
    ``_memory_cancel``, flow control in ``_memory_flow`` (this file holds
    producing, reading, acking and the PEL calls).
    """

    async def ensure_groups(self, types: Sequence[str]) -> None:
        """Create each type's stream and consumer group if missing."""
        with self._lock:
            for type in types:
                self._stream(type)

    async def enqueue(self, type: str, fields: Fields) -> str:
        """Append one job; returns its entry id. Counts it as enqueued."""
        return (await self.enqueue_many([(type, fields)]))[0]

    async def enqueue_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """Append many jobs at once; returns their entry ids in order."""
        with self._lock:
            ids = []
            for type, fields in items:
                stream = self._stream(type)
                ids.append(stream.add(fields))
                stream.counters["enqueued"] += 1
            waiters = self._waiters_for(type for type, _ in items)
        self._wake(waiters)
        return ids

    def _take(
        self,
        types: Sequence[str],
        consumer: str,
        count: int,
        shares: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """XREADGROUP ``>``: up to ``count`` never-delivered entries in all, shared among the
        types as the Redis backend shares them, or as ``shares`` says (lock held)."""
        out: list[Delivery] = []
        if not types:
            return out
        now = time.monotonic()
        if shares is None:
            counts = split_count(count, len(types), self._rotation)
            self._rotation = (self._rotation + count % len(types)) % len(types)
        else:
            counts = [shares.get(t, 0) for t in types]
        for type, share in zip(types, counts, strict=True):
            stream = self._stream(type)
            stream.consumers[consumer] = now
            if stream.levels:
                take_levels(self._turns, type, stream, consumer, share, now, out)
            else:
                take_from(type, stream, stream.undelivered, consumer, share, now, out)
        return out

    async def read(
        self,
        types: Sequence[str],
        consumer: str,
        count: int,
        block_ms: int,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Deliver up to ``count`` new entries in all (each type at most its ``shares``, when
        given); block up to ``block_ms``.

        ``count`` < 1 and ``block_ms`` < 1 return at once (no "unlimited", no "forever").
        """
        types = list(dict.fromkeys(types))
        waiter: Waiter | None = None
        with self._lock:
            out = self._take(types, consumer, count, shares)
            if not out and count > 0 and block_ms > 0:
                waiter = Waiter(asyncio.get_running_loop(), asyncio.Event(), frozenset(types))
                self._waiters.add(waiter)
        if waiter is None:
            await asyncio.sleep(0)  # a real backend yields on I/O; do not starve the loop
            return out
        deadline = time.monotonic() + block_ms / 1000
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except TimeoutError:
                    return []
                with self._lock:
                    waiter.event.clear()
                    out = self._take(types, consumer, count, shares)
                # Woken but another consumer got there first: wait on, like Redis does.
                if out or waiter.closed:
                    return out
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    async def claim_idle(
        self, type: str, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """XAUTOCLAIM: claim up to ``count`` entries idle at least ``min_idle_ms`` from ``cursor``.

        Like Redis, it examines at most ``10 * count`` PEL entries, and a deleted entry it drops
        from the PEL counts towards ``count``.
        """
        start = parse_id(cursor)
        claimed: list[Delivery] = []
        deleted: list[str] = []
        with self._lock:
            stream = self._stream(type)
            now = time.monotonic()
            stream.consumers[consumer] = now
            scan = [(i, p) for i, p in stream.pel.items() if p.key >= start]
            budget, attempts, index = count, count * 10, 0
            while index < len(scan) and budget > 0 and attempts > 0:
                entry_id, pending = scan[index]
                index += 1
                attempts -= 1
                fields = stream.entries.get(entry_id)
                if fields is None:
                    del stream.pel[entry_id]
                    deleted.append(entry_id)
                    budget -= 1
                    continue
                if pending.idle_ms(now) < min_idle_ms:
                    continue
                pending.consumer, pending.since = consumer, now
                pending.deliveries += 1
                claimed.append(Delivery(type, entry_id, dict(fields), pending.deliveries))
                budget -= 1
            next_cursor = scan[index][0] if index < len(scan) else "0-0"
        return Claimed(cursor=next_cursor, deliveries=claimed, deleted=deleted)

    async def enqueue_unique(
        self, type: str, fields: Fields, key: str, *, delay_ms: int, ttl_ms: int
    ) -> tuple[str, bool]:
        """One job unless a job holds ``key``; (the holder's job id, whether this created it)."""
        job_id = fields[F_ID].decode()
        with self._lock:
            stream = self._stream(type)
            holder = stream.unique_holder(key)
            if holder is not None:
                return holder, False
            stream.unique[key] = (job_id, time.monotonic() + max(1, ttl_ms) / 1000)
            stream.counters["enqueued"] += 1
            if delay_ms > 0:
                self._schedule_locked(stream, fields, delay_ms)
                return job_id, True
            stream.add(fields)
            waiters = self._waiters_for([type])
        self._wake(waiters)
        return job_id, True

    async def finish(
        self,
        type: str,
        consumer: str,
        jobs: Sequence[tuple[str, Fields]],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Ack owned entries and release their unique keys (and do the end-of-job clean-up of
        ``ends``, with ``keep`` their records); count them processed. Returns the ids not
        owned."""
        lost: list[str] = []
        end_of = {e.entry_id: e for e in ends}
        with self._lock:
            stream = self._stream(type)
            for entry_id, _ in jobs:
                if stream.owned(entry_id, consumer) is None:
                    lost.append(entry_id)
                    continue
                del stream.pel[entry_id]
                stored = stream.entries.pop(entry_id, None)
                stream.counters["processed"] += 1
                if stored is not None:
                    stream.release_unique(stored)
                if entry_id in end_of:
                    self._end_job(type, end_of[entry_id])
                    if keep is not None:
                        stream.record_done(end_of[entry_id], consumer, keep)
        return lost

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
        """:meth:`ack` per type, then a :meth:`read` that does not block."""
        ends = ends or {}
        lost = {
            t: await self.ack(t, consumer, ids, ends.get(t, ()), keep) for t, ids in acks.items()
        }
        return AckedRead(lost, {}, await self.read(types, consumer, count, 0, shares=shares))

    async def ack(
        self,
        type: str,
        consumer: str,
        entry_ids: Sequence[str],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Acknowledge and delete the entries ``consumer`` still owns; count them processed,
        and do the end-of-job clean-up of ``ends`` for those acked (with ``keep``, write their
        records).

        Returns the ids it could not acknowledge: owned by another consumer, or no longer pending.
        """
        lost: list[str] = []
        end_of = {e.entry_id: e for e in ends}
        with self._lock:
            stream = self._stream(type)
            for entry_id in dict.fromkeys(entry_ids):
                if stream.owned(entry_id, consumer) is None:
                    lost.append(entry_id)
                    continue
                del stream.pel[entry_id]
                stream.entries.pop(entry_id, None)
                stream.counters["processed"] += 1
                if end_of and entry_id in end_of:
                    self._end_job(type, end_of[entry_id])
                    if keep is not None:
                        stream.record_done(end_of[entry_id], consumer, keep)
        return lost

    async def requeue(self, type: str, entry_ids: Sequence[str], min_idle_ms: int) -> list[str]:
        """Copy stuck pending entries to new ones at the end; ack and delete the old ones."""
        done: list[str] = []
        with self._lock:
            stream = self._stream(type)
            now = time.monotonic()
            for entry_id in dict.fromkeys(entry_ids):
                pending = stream.pel.get(entry_id)
                if pending is None or pending.idle_ms(now) < min_idle_ms:
                    continue
                del stream.pel[entry_id]
                fields = stream.entries.pop(entry_id, None)
                if fields is not None:
                    stream.add(fields)
                    done.append(entry_id)
            waiters = self._waiters_for([type]) if done else []
        self._wake(waiters)
        return done

    async def refresh(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Reset the idle time of the entries ``consumer`` still owns; returns the others."""
        lost: list[str] = []
        with self._lock:
            stream = self._stream(type)
            now = time.monotonic()
            for entry_id in dict.fromkeys(entry_ids):
                pending = stream.owned(entry_id, consumer)
                if pending is None:
                    lost.append(entry_id)
                else:
                    pending.since = stream.consumers[consumer] = now
        return lost

    async def release(
        self, type: str, consumer: str, entry_ids: Sequence[str], idle_ms: int
    ) -> None:
        """Mark owned entries idle ``idle_ms`` (claimable at once), not counting the delivery
        that was interrupted (XCLAIM ... RETRYCOUNT n-1)."""
        with self._lock:
            stream = self._stream(type)
            now = time.monotonic()
            for entry_id in entry_ids:
                pending = stream.owned(entry_id, consumer)
                if pending is not None:
                    pending.since, stream.consumers[consumer] = now - idle_ms / 1000, now
                    pending.deliveries = max(0, pending.deliveries - 1)

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
        """Move an owned entry to the dead stream (``max_dead`` < 1: uncapped); with
        ``fields``, a unique job's key is released; with ``end``, its end-of-job clean-up."""
        with self._lock:
            stream = self._stream(type)
            if stream.owned(entry_id, consumer) is None:
                return False
            del stream.pel[entry_id]
            fields = stream.entries.pop(entry_id, {})
            if F_UNIQUE in fields:
                stream.release_unique(fields)
            dead_id = stream.new_dead_id()
            stream.dead[dead_id] = DeadEntry(
                dead_id=dead_id,
                job_id=job_id_of(fields),
                reason=letter.reason,
                error=letter.error,
                deliveries=letter.deliveries,
                entry_id=entry_id,
                dead_at=time.time(),
                fields=fields,
            )
            while 0 < max_dead < len(stream.dead):  # XADD MAXLEN: the oldest go first
                del stream.dead[next(iter(stream.dead))]
            stream.counters["dead"] += 1
            if letter.failed:
                stream.counters["failed"] += 1
            if end is not None:
                self._end_job(type, end)
            return True

    async def remove_consumer(self, type: str, consumer: str, *, hand_over: bool = False) -> bool:
        """Forget ``consumer`` unless it still holds pending entries; with ``hand_over``, those
        pass to HANDED_BACK first (idle time and delivery count kept)."""
        with self._lock:
            stream = self._stream(type)
            held = [p for p in stream.pel.values() if p.consumer == consumer]
            if held and not hand_over:
                return False
            if held:
                for pending in held:
                    pending.consumer = HANDED_BACK
                stream.consumers[HANDED_BACK] = time.monotonic()
            return stream.consumers.pop(consumer, None) is not None

    async def aclose(self) -> None:
        """Nothing to release; wake blocked readers so they return."""
        with self._lock:
            waiters = list(self._waiters)
            for waiter in waiters:
                waiter.closed = True
        self._wake(waiters)
