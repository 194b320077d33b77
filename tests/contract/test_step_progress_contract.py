"""Step progress on every backend: a job with several steps resumes at the step that failed (or
was interrupted), with the checkpoint its earlier steps saved; the progress is recorded only by
the entry's owner and ends with the job; a one-step type records nothing."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from test_contract import TIMEOUT, MakeWorker, drain, serving, stats_of
from waiting import eventually

from streamq import Backend, Job, JobContext, Queue, Registry
from streamq.backends._base import DeadLetter, Delivery, JobEnd


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


@dataclass(frozen=True, slots=True)
class Launched:
    """A checkpoint: what step 2 launched."""

    instance_ids: tuple[str, ...]
    region: str


class CloudError(Exception):
    """A provider's error that a retry may mend."""


class Counting:
    """A backend that counts the step progress calls the worker makes through it."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in ("record_progress", "job_progress"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted


@contextlib.contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """The log lines logged meanwhile, with the fields bound in context variables (the job's,
    its step) merged in as an application's configuration would."""
    # capture_logs(processors=...) would do, but only from structlog 25.5 (the floor is lower).
    capture, saved = structlog.testing.LogCapture(), structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


def job(n: int = 0) -> Job[Item]:
    """A test job of type ``t``."""
    return Job(type="t", args=Item(n), account_id=1)


async def read_one(backend: Backend, consumer: str) -> Delivery:
    """The one job waiting in ``t``, delivered to ``consumer``."""
    found: list[Delivery] = []
    async with asyncio.timeout(TIMEOUT):
        while not found:
            found = await backend.read(["t"], consumer, 10, 50)
    (d,) = found
    return d


# resuming at the step that failed ---------------------------------------------------------


async def test_a_three_step_job_failing_at_step_3_twice_runs_steps_1_and_2_once(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Step 3 fails on the first two deliveries: the retries start at step 3, so steps 1 and 2
    run once and step 3 three times; the log line of each failure names step 3; the job is
    acked and leaves no progress behind."""
    runs: collections.Counter[str] = collections.Counter()

    async def one(j: Job[Item]) -> None:
        runs["one"] += 1

    def two(j: Job[Item]) -> None:  # sync, in a step thread
        runs["two"] += 1

    async def three(j: Job[Item]) -> None:
        runs["three"] += 1
        if runs["three"] <= 2:
            raise CloudError(f"not yet ({runs['three']})")

    registry.register("t", Item, one, two, three)
    job_id = await queue.enqueue(job())
    with captured_logs() as logs:
        await drain(make_worker("t", max_deliveries=3))

    assert runs == {"one": 1, "two": 1, "three": 3}
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.failed, stats.retried, stats.dead) == (1, 2, 2, 0)
    failed = [e for e in logs if e["event"] == "streamq.job.failed"]
    assert [(e["step"], e["step_name"], e["deliveries"]) for e in failed] == [
        (2, "three", 1),
        (2, "three", 2),
    ]
    assert await queue.backend.job_progress("t", job_id) is None


async def test_the_checkpoint_of_step_2_reaches_step_3_across_a_retry(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A sync step 2 saves a typed checkpoint; step 3 gets it as that type in the same delivery
    and again in the retry after it failed (which started at step 3, its first_step and
    deliveries saying so); step 1's checkpoint was replaced by step 2's."""
    seen: list[tuple[Any, int, int, int, str]] = []

    async def one(j: Job[Item], ctx: JobContext[Launched]) -> None:
        assert ctx.checkpoint is None
        ctx.save(Launched(instance_ids=(), region="nowhere"))

    def two(j: Job[Item], ctx: JobContext[Launched]) -> None:
        assert ctx.checkpoint == Launched(instance_ids=(), region="nowhere")
        ctx.save(Launched(instance_ids=("i-1", "i-2"), region="eu-west-1"))

    async def three(j: Job[Item], ctx: JobContext[Launched]) -> None:
        seen.append((ctx.checkpoint, ctx.deliveries, ctx.first_step, ctx.step, ctx.step_name))
        if len(seen) == 1:
            raise CloudError("describe failed")

    registry.register("t", Item, one, two, three, checkpoint=Launched)
    await queue.enqueue(job())
    await drain(make_worker("t"))

    expected = Launched(instance_ids=("i-1", "i-2"), region="eu-west-1")
    assert seen == [(expected, 1, 0, 2, "three"), (expected, 2, 2, 2, "three")]
    assert all(isinstance(s[0], Launched) for s in seen)
    assert (await stats_of(queue, "t")).processed == 1


async def test_the_progress_is_visible_while_the_job_runs_and_gone_when_it_is_acked(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """While step 2 runs, the backend shows one step done, step 2 next and step 1's checkpoint
    (looked up by job id alone, and by its entry); once the job is acked, nothing."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def one(j: Job[Item], ctx: JobContext[Any]) -> None:
        ctx.save({"key_name": "k-1"})

    async def two(j: Job[Item]) -> None:
        entered.set()
        await release.wait()

    registry.register("t", Item, one, two)
    job_id = await queue.enqueue(job())
    backend = queue.backend
    async with serving(make_worker("t")):
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        progress = await backend.job_progress("t", job_id)
        assert progress is not None
        assert (progress.done, progress.next_step, progress.checkpoint) == (
            1,
            "two",
            b'{"key_name":"k-1"}',
        )
        assert progress.recorded_ms > 0
        (pending,) = await queue.pending("t")
        by_entry = await backend.job_progress("t", job_id, entry_id=pending.entry_id)
        assert by_entry == progress
        release.set()
        await eventually(lambda: _processed(queue, 1), TIMEOUT)
    assert await backend.job_progress("t", job_id) is None


async def _processed(queue: Queue, n: int) -> bool:
    return (await stats_of(queue, "t")).processed == n


async def test_the_job_lookup_shows_the_step_running_and_the_one_a_retry_starts_at(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Queue.job of a three-step job: running step 2 ("two", index 1) while it blocks there;
    after step 3 failed, retrying at step 3 ("three", index 2)."""
    entered, release = asyncio.Event(), asyncio.Event()
    failed: list[int] = []

    async def one(j: Job[Item]) -> None:
        return None

    async def two(j: Job[Item]) -> None:
        entered.set()
        await release.wait()

    async def three(j: Job[Item]) -> None:
        if not failed:
            failed.append(1)
            raise CloudError("once")

    registry.register("t", Item, one, two, three)
    job_id = await queue.enqueue(job())
    async with serving(make_worker("t", retry_base=1.5)):
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        running = await queue.job("t", job_id)
        assert (running.state, running.step, running.step_name) == ("running", 1, "two")
        release.set()
        await eventually(lambda: _state_is(queue, job_id, "retrying"), TIMEOUT)
        retrying = await queue.job("t", job_id)
        assert (retrying.step, retrying.step_name) == (2, "three")
        await eventually(lambda: _processed(queue, 1), TIMEOUT)


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return (await queue.job("t", job_id)).state == state


async def test_a_dead_lettered_job_leaves_no_progress_behind(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Step 2 fails on every delivery: steps 1 ran once, the job ends in the dead stream after
    max_deliveries, and its progress (step 1 done) went with it."""
    runs: collections.Counter[str] = collections.Counter()

    async def one(j: Job[Item]) -> None:
        runs["one"] += 1

    async def two(j: Job[Item]) -> None:
        runs["two"] += 1
        raise CloudError("always")

    registry.register("t", Item, one, two)
    job_id = await queue.enqueue(job())
    await drain(make_worker("t", max_deliveries=3))

    assert runs == {"one": 1, "two": 3}
    (dead,) = await queue.dead("t")
    assert (dead.job_id, dead.error) == (job_id, "CloudError: always")
    assert await queue.backend.job_progress("t", job_id) is None


async def test_a_checkpoint_over_the_limit_fails_its_step_without_retries(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A checkpoint of more than 64 KiB is a CheckpointError in the step that saves it: the
    job goes to the dead stream at once (no retry makes it smaller), nothing recorded."""
    runs: collections.Counter[str] = collections.Counter()

    async def one(j: Job[Item], ctx: JobContext[Any]) -> None:
        runs["one"] += 1
        ctx.save({"blob": "x" * 70_000})

    async def two(j: Job[Item]) -> None:
        runs["two"] += 1

    registry.register("t", Item, one, two)
    job_id = await queue.enqueue(job())
    await drain(make_worker("t", max_deliveries=3))

    assert runs == {"one": 1}
    (dead,) = await queue.dead("t")
    assert dead.reason == "not retryable: CheckpointError is NonRetryable"
    assert dead.error.startswith("CheckpointError: checkpoint is 70011 bytes encoded, over the")
    assert dead.error.endswith("over the limit of 65536")
    assert await queue.backend.job_progress("t", job_id) is None


async def test_a_unique_job_with_several_steps_resumes_and_ends_with_its_key(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A unique job of three steps whose step 3 fails once resumes at step 3; its end (the
    unique jobs' ack) releases the key and deletes the progress together; another unique job
    of the type that dies leaves neither behind either."""
    runs: collections.Counter[str] = collections.Counter()

    async def one(j: Job[Item]) -> None:
        runs[f"one-{j.args.n}"] += 1

    async def two(j: Job[Item]) -> None:
        runs[f"two-{j.args.n}"] += 1

    async def three(j: Job[Item]) -> None:
        runs[f"three-{j.args.n}"] += 1
        if j.args.n == 2 or runs[f"three-{j.args.n}"] == 1:
            raise CloudError("not yet")

    registry.register("t", Item, one, two, three)
    ok = await queue.enqueue(job(1), unique_key="reservation:1")
    bad = await queue.enqueue(job(2), unique_key="reservation:2")
    await drain(make_worker("t", max_deliveries=2))

    assert runs == {"one-1": 1, "two-1": 1, "three-1": 2, "one-2": 1, "two-2": 1, "three-2": 2}
    stats = await stats_of(queue, "t")
    assert (stats.processed, stats.dead) == (1, 1)
    for job_id in (ok, bad):
        assert await queue.backend.job_progress("t", job_id) is None
    # Both keys are free: new jobs with them are not duplicates.
    again = [await queue.enqueue(job(n), unique_key=f"reservation:{n}") for n in (1, 2)]
    assert [j.duplicate for j in again] == [False, False]


# what a delivery reads and records --------------------------------------------------------


async def test_one_step_types_record_and_read_nothing(
    registry: Registry, backend: Backend, make_worker: MakeWorker
) -> None:
    """A one-step type, with a context or without, neither records nor reads step progress,
    retries included; its context says step 0 of 1 and counts the deliveries."""
    counting = Counting(backend)
    queue = Queue(counting, registry=registry)  # type: ignore[arg-type]
    seen: list[tuple[int, int, str, int]] = []

    async def with_ctx(j: Job[Item], ctx: JobContext[Any]) -> None:
        seen.append((ctx.deliveries, ctx.step, ctx.step_name, ctx.steps))
        if ctx.deliveries == 1:
            raise CloudError("once")

    plain_runs: list[int] = []

    async def plain(j: Job[Item]) -> None:
        plain_runs.append(j.args.n)
        if len(plain_runs) == 1:
            raise CloudError("once")

    registry.register("t", Item, with_ctx)
    registry.register("p", Item, plain)
    await queue.enqueue(job())
    await queue.enqueue(Job(type="p", args=Item(5)))
    await drain(make_worker("t", "p", on=counting))

    assert seen == [(1, 0, "with_ctx", 1), (2, 0, "with_ctx", 1)]
    assert plain_runs == [5, 5]
    assert counting.calls == {}


async def test_a_first_delivery_records_each_step_but_the_last_and_reads_nothing(
    registry: Registry, backend: Backend, make_worker: MakeWorker
) -> None:
    """Three steps that succeed at once: two records (after steps 1 and 2; the ack ends the
    job), and no read (a first delivery has no progress to find)."""
    counting = Counting(backend)
    queue = Queue(counting, registry=registry)  # type: ignore[arg-type]

    async def step(j: Job[Item]) -> None:
        return None

    registry.register("t", Item, step, step, step)
    await queue.enqueue_many([job(n) for n in range(3)])
    await drain(make_worker("t", on=counting))

    assert counting.calls == {"record_progress": 6}
    assert (await stats_of(queue, "t")).processed == 3


async def test_a_consumer_that_lost_the_entry_cannot_record_nor_end_the_progress(
    registry: Registry, queue: Queue, backend: Backend
) -> None:
    """Only the entry's owner records: another consumer's record changes nothing; after a claim
    the old owner's record is refused and its ack (with the end-of-job clean-up) leaves the
    progress alone; the new owner's ack deletes it. A checkpoint of None keeps the stored one,
    b'' drops it."""
    registry.register("t", Item, lambda j: None, lambda j: None)
    await backend.ensure_groups(["t"])
    job_id = await queue.enqueue(job())
    d = await read_one(backend, "a")

    def record(consumer: str, done: int, checkpoint: bytes | None) -> Any:
        return backend.record_progress(
            "t",
            consumer,
            d.entry_id,
            job_id,
            done=done,
            next_step=f"step{done}",
            checkpoint=checkpoint,
            ttl_ms=60_000,
        )

    assert not await record("b", 1, b'{"x":1}')
    assert await backend.job_progress("t", job_id) is None
    assert await record("a", 1, b'{"x":1}')
    found = await backend.job_progress("t", job_id)
    assert found is not None
    assert (found.done, found.next_step, found.checkpoint) == (1, "step1", b'{"x":1}')

    claimed = await backend.claim_idle("t", "b", 0, 10, "0-0")
    assert [c.entry_id for c in claimed.deliveries] == [d.entry_id]
    assert not await record("a", 2, b'{"x":2}')
    found = await backend.job_progress("t", job_id)
    assert found is not None
    assert (found.done, found.checkpoint) == (1, b'{"x":1}')

    assert await record("b", 2, None)
    found = await backend.job_progress("t", job_id)
    assert found is not None
    assert (found.done, found.next_step, found.checkpoint) == (2, "step2", b'{"x":1}')
    assert await record("b", 2, b"")
    found = await backend.job_progress("t", job_id)
    assert found is not None
    assert found.checkpoint == b""

    end = JobEnd(d.entry_id, job_id, progress=True)
    assert await backend.ack("t", "a", [d.entry_id], [end]) == [d.entry_id]
    assert await backend.job_progress("t", job_id) is not None
    assert await backend.ack("t", "b", [d.entry_id], [end]) == []
    assert await backend.job_progress("t", job_id) is None


async def test_records_made_together_are_each_checked_for_their_owner(
    registry: Registry, queue: Queue, backend: Backend
) -> None:
    """Records made at the same moment (they may travel in one call) are each checked: of
    three entries read by "a", the one another consumer claimed is refused, the others
    recorded."""
    registry.register("t", Item, lambda j: None, lambda j: None)
    await backend.ensure_groups(["t"])
    await queue.enqueue_many([job(n) for n in range(3)])
    held: list[Delivery] = []
    async with asyncio.timeout(TIMEOUT):
        while len(held) < 3:
            held += await backend.read(["t"], "a", 3 - len(held), 50)
    (stolen,) = (await backend.claim_idle("t", "b", 0, 1, "0-0")).deliveries
    job_ids = [d.fields[b"id"].decode() for d in held]
    answers = await asyncio.gather(
        *(
            backend.record_progress(
                "t", "a", d.entry_id, job_id, done=1, next_step="two", checkpoint=b"", ttl_ms=60_000
            )
            for d, job_id in zip(held, job_ids, strict=True)
        )
    )
    expected = [d.entry_id != stolen.entry_id for d in held]
    assert sorted(expected) == [False, True, True]
    assert answers == expected
    found = [await backend.job_progress("t", job_id) is not None for job_id in job_ids]
    assert found == expected


async def test_a_record_whose_job_vanished_expires_on_its_own(
    registry: Registry, queue: Queue, backend: Backend
) -> None:
    """A record lives ttl_ms after its last write (each record starts it again), so one whose
    job ended without its clean-up (here: never acked) does not stay for ever."""
    registry.register("t", Item, lambda j: None, lambda j: None)
    await backend.ensure_groups(["t"])
    job_id = await queue.enqueue(job())
    d = await read_one(backend, "a")

    def record(ttl_ms: int) -> Any:
        return backend.record_progress(
            "t", "a", d.entry_id, job_id, done=1, next_step="x", checkpoint=b"", ttl_ms=ttl_ms
        )

    assert await record(60_000)
    assert await record(300)  # the last record's TTL is the one that counts
    assert await backend.job_progress("t", job_id) is not None
    await eventually(lambda: _no_progress(backend, job_id), TIMEOUT)


async def _no_progress(backend: Backend, job_id: str) -> bool:
    return await backend.job_progress("t", job_id) is None


async def test_a_dead_letter_ends_the_progress_only_for_its_owner(
    registry: Registry, queue: Queue, backend: Backend
) -> None:
    """dead_letter with the end-of-job clean-up: refused for a consumer that does not own the
    entry (the progress stays), done by the owner (the progress goes with the job)."""
    registry.register("t", Item, lambda j: None, lambda j: None)
    await backend.ensure_groups(["t"])
    job_id = await queue.enqueue(job())
    d = await read_one(backend, "a")
    assert await backend.record_progress(
        "t", "a", d.entry_id, job_id, done=1, next_step="x", checkpoint=b"", ttl_ms=60_000
    )
    end = JobEnd(d.entry_id, job_id, progress=True)
    letter = DeadLetter(reason="test")
    assert not await backend.dead_letter("t", "b", d.entry_id, letter, 10, end=end)
    assert await backend.job_progress("t", job_id) is not None
    assert await backend.dead_letter("t", "a", d.entry_id, letter, 10, end=end)
    assert await backend.job_progress("t", job_id) is None
    assert len(await queue.dead("t")) == 1


async def test_a_lease_lost_between_steps_stops_the_job_there(
    registry: Registry, queue: Queue, backend: Backend, make_worker: MakeWorker
) -> None:
    """Another consumer takes the entry while step 1 runs: the record after step 1 is refused,
    step 2 does not run here, nothing is recorded, and the worker says so (lease_lost, stage
    step); the job is the other consumer's."""
    entered, release = asyncio.Event(), asyncio.Event()
    runs: collections.Counter[str] = collections.Counter()

    async def one(j: Job[Item]) -> None:
        runs["one"] += 1
        entered.set()
        await release.wait()

    async def two(j: Job[Item]) -> None:
        runs["two"] += 1

    registry.register("t", Item, one, two)
    job_id = await queue.enqueue(job())
    worker = make_worker("t", heartbeat=5.0, claim_after=60.0)
    with captured_logs() as logs:
        async with serving(worker):
            await asyncio.wait_for(entered.wait(), TIMEOUT)
            claimed = await backend.claim_idle("t", "thief", 0, 10, "0-0")
            assert len(claimed.deliveries) == 1
            release.set()
            await eventually(lambda: worker.in_flight == 0, TIMEOUT)
    assert runs == {"one": 1}
    assert await backend.job_progress("t", job_id) is None
    lost = [e for e in logs if e["event"] == "streamq.job.lease_lost"]
    assert [(e["stage"], e["step"], e["job_id"]) for e in lost] == [("step", 0, job_id)]
    (pending,) = await queue.pending("t")
    assert pending.consumer == "thief"


async def test_a_job_handed_back_at_shutdown_resumes_at_its_next_step(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A worker stopped while step 2 runs hands the job back (its delivery not counted, so the
    next one counts 1 again): the worker that claims it still starts at step 2, with step 1's
    checkpoint."""
    runs: collections.Counter[str] = collections.Counter()
    entered = asyncio.Event()
    seen: list[tuple[Any, int, int]] = []

    async def one(j: Job[Item], ctx: JobContext[Any]) -> None:
        runs["one"] += 1
        ctx.save(["key"])

    async def two(j: Job[Item], ctx: JobContext[Any]) -> None:
        runs["two"] += 1
        seen.append((ctx.checkpoint, ctx.deliveries, ctx.first_step))
        if runs["two"] == 1:
            entered.set()
            await asyncio.Event().wait()  # until the stop cancels it

    registry.register("t", Item, one, two)
    await queue.enqueue(job())
    stopped = make_worker("t", shutdown_grace=0.1, shutdown_cleanup=2.0)
    async with serving(stopped):
        await asyncio.wait_for(entered.wait(), TIMEOUT)
    await drain(make_worker("t"))

    assert runs == {"one": 1, "two": 2}
    assert seen == [(["key"], 1, 0), (["key"], 1, 1)]
    assert (await stats_of(queue, "t")).processed == 1


async def test_a_type_whose_steps_changed_starts_again_at_its_first_step(
    registry: Registry, queue: Queue, backend: Backend, make_worker: MakeWorker
) -> None:
    """A recorded progress whose next step is not the one this type has at that index (the
    type changed between deploys) is set aside with a warning: the job runs from step 1."""
    runs: list[str] = []

    async def one(j: Job[Item]) -> None:
        runs.append("one")

    async def two(j: Job[Item]) -> None:
        runs.append("two")

    registry.register("t", Item, one, two)
    await backend.ensure_groups(["t"])
    job_id = await queue.enqueue(job())
    d = await read_one(backend, "gone")
    assert await backend.record_progress(
        "t", "gone", d.entry_id, job_id, done=1, next_step="renamed", checkpoint=b"", ttl_ms=60_000
    )
    with captured_logs() as logs:
        await drain(make_worker("t", claim_after=0.2, heartbeat=0.05))
    assert runs == ["one", "two"]
    ignored = [e for e in logs if e["event"] == "streamq.job.progress_ignored"]
    assert [(e["done"], e["next_step"]) for e in ignored] == [(1, "renamed")]
    assert await backend.job_progress("t", job_id) is None
