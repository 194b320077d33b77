"""The in-memory backend keeps Redis Streams consumer-group semantics."""

from __future__ import annotations

import asyncio
import threading

from streamq.backends._base import COUNTERS, DeadLetter, Fields
from streamq.backends.memory import MemoryBackend

T = "launch"


def job(n: int) -> Fields:
    """Stream fields of a job whose id is ``job-<n>``."""
    return {b"id": f"job-{n}".encode(), b"v": b"1", b"job": b"{}"}


async def filled(n: int) -> tuple[MemoryBackend, list[str]]:
    """A backend with ``n`` jobs enqueued on type T."""
    backend = MemoryBackend()
    await backend.ensure_groups([T])
    ids = await backend.enqueue_many([(T, job(i)) for i in range(n)])
    return backend, ids


async def test_entry_ids_increase() -> None:
    """Entry ids are "ms-seq" strings, strictly increasing within a stream."""
    _, ids = await filled(50)
    keys = [tuple(int(p) for p in i.split("-")) for i in ids]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


async def test_read_delivers_up_to_count_and_only_new_entries() -> None:
    """XREADGROUP >: at most ``count`` entries, in order, each handed out once."""
    backend, ids = await filled(3)
    first = await backend.read([T], "a", 2, 0)
    assert [d.entry_id for d in first] == ids[:2]
    assert [d.fields for d in first] == [job(0), job(1)]
    assert all(d.deliveries == 1 and d.type == T for d in first)
    second = await backend.read([T], "a", 5, 0)
    assert [d.entry_id for d in second] == ids[2:]
    assert await backend.read([T], "a", 5, 0) == []
    assert (await backend.stats(T)).pending == 3


async def test_read_count_is_shared_among_the_types() -> None:
    """``count`` is for all types together, shared evenly; the remainder goes to the types in
    turn, so over reads each type gets its share."""
    backend = MemoryBackend()
    for n in range(6):
        await backend.enqueue("other", job(n))
        await backend.enqueue(T, job(10 + n))
    got = await backend.read([T, "other"], "a", 2, 0)
    assert [(d.type, d.fields) for d in got] == [(T, job(10)), ("other", job(0))]
    first = await backend.read([T, "other"], "a", 3, 0)  # T gets the extra one
    second = await backend.read([T, "other"], "a", 3, 0)  # then "other" does
    assert [d.type for d in first] == [T, T, "other"]
    assert [d.type for d in second] == [T, "other", "other"]
    rest = await backend.read([T, "other"], "a", 100, 0)
    assert [d.fields for d in rest] == [job(14), job(15), job(4), job(5)]


async def test_second_consumer_does_not_get_delivered_entries() -> None:
    """Entries delivered to one consumer are not delivered again to another."""
    backend, ids = await filled(2)
    assert len(await backend.read([T], "a", 10, 0)) == 2
    assert await backend.read([T], "b", 10, 0) == []
    new_id = await backend.enqueue(T, job(9))
    assert [d.entry_id for d in await backend.read([T], "b", 10, 0)] == [new_id]
    pending = await backend.pending(T, consumer=None, min_idle_ms=0, limit=10)
    assert [(p.entry_id, p.consumer) for p in pending] == [
        (ids[0], "a"),
        (ids[1], "a"),
        (new_id, "b"),
    ]


async def test_claim_idle_respects_min_idle_and_counts_a_delivery() -> None:
    """Only entries idle long enough are claimed; the claim moves ownership and counts."""
    backend, ids = await filled(2)
    await backend.read([T], "a", 10, 0)
    nothing = await backend.claim_idle(T, "b", 10_000, 10, "0-0")
    assert (nothing.deliveries, nothing.deleted, nothing.cursor) == ([], [], "0-0")
    await backend.release(T, "a", [ids[1]], 20_000)  # idle 20 s, its delivery taken back
    claimed = await backend.claim_idle(T, "b", 10_000, 10, "0-0")
    assert [(d.entry_id, d.deliveries, d.fields) for d in claimed.deliveries] == [
        (ids[1], 1, job(1))
    ]
    [entry] = await backend.pending(T, consumer="b", min_idle_ms=0, limit=10)
    assert (entry.entry_id, entry.deliveries) == (ids[1], 1)
    assert entry.idle_ms < 10_000  # the claim reset its idle time


async def test_claim_idle_reports_deleted_entries() -> None:
    """A PEL entry whose stream entry is gone is dropped from the PEL and reported."""
    backend, ids = await filled(2)
    await backend.read([T], "a", 10, 0)
    assert backend.delete_entries(T, [ids[0]]) == 1
    claimed = await backend.claim_idle(T, "b", 0, 10, "0-0")
    assert claimed.deleted == [ids[0]]
    assert [d.entry_id for d in claimed.deliveries] == [ids[1]]
    assert (await backend.stats(T)).pending == 1


async def test_claim_idle_cursor_progresses_to_the_end() -> None:
    """Each pass resumes after the last examined entry; 0-0 marks the end of the scan."""
    backend, ids = await filled(3)
    await backend.read([T], "a", 10, 0)
    cursor, seen = "0-0", []
    for expected_cursor in (ids[1], ids[2], "0-0"):
        claimed = await backend.claim_idle(T, "b", 0, 1, cursor)
        seen += [d.entry_id for d in claimed.deliveries]
        cursor = claimed.cursor
        assert cursor == expected_cursor
    assert seen == ids


async def test_ack_by_non_owner_is_lost_and_entry_stays_pending() -> None:
    """Acking an entry another consumer owns fails for it and leaves it in the PEL."""
    backend, ids = await filled(2)
    await backend.read([T], "a", 1, 0)
    await backend.read([T], "b", 1, 0)
    assert await backend.ack(T, "b", [ids[0], ids[1], "1-1"]) == [ids[0], "1-1"]
    stats = await backend.stats(T)
    assert (stats.length, stats.pending, stats.counters["processed"]) == (1, 1, 1)
    [entry] = await backend.pending(T, consumer=None, min_idle_ms=0, limit=10)
    assert (entry.entry_id, entry.consumer) == (ids[0], "a")
    assert await backend.fetch(T, ids) == {ids[0]: job(0)}


async def test_refresh_returns_entries_no_longer_owned() -> None:
    """A lease refresh keeps owned entries and names the ones another consumer took."""
    backend, ids = await filled(2)
    await backend.read([T], "a", 10, 0)
    await backend.release(T, "a", [ids[0]], 60_000)
    await backend.claim_idle(T, "b", 30_000, 10, "0-0")
    assert await backend.refresh(T, "a", ids) == [ids[0]]


async def test_dead_letter_copies_fields_and_reason() -> None:
    """A dead letter keeps the fields, job id and reason; the counters move."""
    backend, ids = await filled(1)
    await backend.read([T], "a", 1, 0)
    letter = DeadLetter(reason="max deliveries", error="boom", deliveries=5, failed=True)
    assert not await backend.dead_letter(T, "b", ids[0], letter, 100)
    assert await backend.dead_letter(T, "a", ids[0], letter, 100)
    [dead] = await backend.dead_list(T, 10)
    assert (dead.job_id, dead.reason, dead.error, dead.deliveries) == (
        "job-0",
        "max deliveries",
        "boom",
        5,
    )
    assert (dead.entry_id, dead.fields) == (ids[0], job(0))
    stats = await backend.stats(T)
    assert (stats.length, stats.pending, stats.dead) == (0, 0, 1)
    assert stats.counters == {
        "enqueued": 1,
        "processed": 0,
        "failed": 1,
        "retried": 0,
        "dead": 1,
        "cancelled": 0,
    }


async def test_dead_stream_is_capped_oldest_first() -> None:
    """Past ``max_dead`` the oldest dead letters are dropped, like XADD MAXLEN."""
    backend, ids = await filled(3)
    await backend.read([T], "a", 3, 0)
    for entry_id in ids:
        await backend.dead_letter(T, "a", entry_id, DeadLetter(reason="poison"), 2)
    assert [d.entry_id for d in await backend.dead_list(T, 10)] == ids[1:]
    assert (await backend.stats(T)).counters["failed"] == 0
    assert await backend.dead_purge(T) == 2
    assert await backend.dead_list(T, 10) == []


async def test_dead_retry_enqueues_a_fresh_entry() -> None:
    """A retried dead job is a new entry, delivered afresh with its original fields."""
    backend, ids = await filled(1)
    await backend.read([T], "a", 1, 0)
    await backend.dead_letter(T, "a", ids[0], DeadLetter(reason="poison", deliveries=3), 10)
    [dead] = await backend.dead_list(T, 10)
    assert await backend.dead_retry(T, [dead.dead_id, "9-9"]) == [dead.dead_id]
    assert await backend.dead_list(T, 10) == []
    [delivery] = await backend.read([T], "b", 10, 0)
    assert delivery.entry_id != ids[0]
    assert (delivery.deliveries, delivery.fields) == (1, job(0))
    assert (await backend.stats(T)).counters["enqueued"] == 2


async def test_blocking_read_wakes_on_enqueue_from_another_thread() -> None:
    """A read blocked on its loop wakes when another thread's loop enqueues."""
    backend = MemoryBackend()
    await backend.ensure_groups([T])
    reader = asyncio.create_task(backend.read([T], "a", 1, 60_000))
    await asyncio.sleep(0.05)
    assert not reader.done()
    thread = threading.Thread(target=asyncio.run, args=(backend.enqueue(T, job(1)),))
    thread.start()
    # A timed-out read returns []; getting the entry proves the enqueue woke it.
    [delivery] = await asyncio.wait_for(reader, 30)
    thread.join()
    assert delivery.fields == job(1)


async def test_blocking_read_times_out_empty() -> None:
    """With nothing enqueued, a blocking read returns [] once ``block_ms`` has passed."""
    backend = MemoryBackend()
    await backend.enqueue("other", job(1))
    assert await backend.read([T], "a", 1, 50) == []


async def test_aclose_wakes_blocked_readers() -> None:
    """aclose makes a blocked read return instead of waiting out its timeout."""
    backend = MemoryBackend()
    reader = asyncio.create_task(backend.read([T], "a", 1, 60_000))
    await asyncio.sleep(0.05)
    await backend.aclose()
    assert await asyncio.wait_for(reader, 30) == []


async def test_stats_shape() -> None:
    """Stats count live entries, the PEL per consumer, consumers and every counter."""
    backend, _ = await filled(3)
    empty = await backend.stats("nothing")
    assert empty.oldest_pending_age_ms is None
    assert empty.counters == dict.fromkeys(COUNTERS, 0)
    await backend.read([T], "a", 2, 0)
    await backend.read([T], "b", 0, 0)
    stats = await backend.stats(T)
    assert (stats.length, stats.pending, stats.consumers) == (3, 2, 2)
    assert {name: held for name, (held, _) in stats.consumers_detail.items()} == {"a": 2, "b": 0}
    assert stats.oldest_pending_age_ms is not None
    assert stats.oldest_pending_age_ms >= 0


async def test_workers_expire_and_carry_their_id() -> None:
    """Heartbeat records include the worker id, vanish on remove and after their TTL."""
    backend = MemoryBackend()
    await backend.heartbeat("w1", {"host": "h"}, 60)
    await backend.heartbeat("w2", {"host": "h"}, 0)
    await backend.heartbeat("w3", {}, 60)
    await backend.remove_worker("w3")
    assert await backend.workers() == [{"host": "h", "id": "w1"}]
