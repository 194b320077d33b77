"""Flow control (``JobType(limit=Limit(...), rate=Rate(...))``, docs/flow-control.md) on every
backend: a key's jobs never run more than its limit at once across workers, measured by the
handlers; other keys' jobs are not blocked behind a held backlog; a rate spaces the starts; a
dead worker's slots free themselves after claim_after; a held job is not a delivery.

On the backends with every type partitioned, the partitions are picked by the limit's key
(``partition_by``): flow control is kept per partition, exact when the partition key is the
limit's key (docs/flow-control.md, "On a cluster and with partitions")."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import partition_by
from test_contract import drain, serving
from waiting import eventually

from streamq import Backend, Job, Limit, Queue, Rate, Registry, Worker
from streamq.backends._flow_base import Admission, FlowRule

MakeWorker = Callable[..., Worker]


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int
    provider: str = "aws"


@dataclass
class Meter:
    """What the handlers saw: per account, how many run now and the most at once; the start
    times (monotonic) of the provider ``aws``'s jobs, and the deliveries of each job."""

    hold: float = 0.0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    now: Counter[int] = field(default_factory=Counter)
    most: Counter[int] = field(default_factory=Counter)
    done: Counter[int] = field(default_factory=Counter)
    starts: list[float] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    others_most: int = 0

    def handler(self) -> Callable[..., object]:
        async def run(job: Job[Item], ctx: object) -> None:
            a = job.account_id
            self.now[a] += 1
            self.most[a] = max(self.most[a], self.now[a])
            self.others_most = max(self.others_most, sum(n for k, n in self.now.items() if k != 7))
            if job.args.provider == "aws":
                self.starts.append(time.monotonic())
            self.deliveries.append(ctx.deliveries)  # type: ignore[attr-defined]
            try:
                await self.release.wait()
                await asyncio.sleep(self.hold)
            finally:
                self.now[a] -= 1
                self.done[a] += 1

        return run


def jobs(account: int, n: int, start: int = 0) -> list[Job[Item]]:
    return [Job(type="launch", account_id=account, args=Item(i)) for i in range(start, start + n)]


async def test_a_key_never_runs_more_than_its_limit_across_workers_and_blocks_no_other_key(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """concurrency=2 per account, 3 workers at -c 16: 40 jobs of account 7 never run more than
    2 at once, while 20 jobs of other accounts enqueued after them run in parallel and finish
    while account 7's backlog is still being worked off."""
    partition_by(backend, "account_id")
    meter = Meter(hold=0.05)
    meter.release.set()
    registry.register("launch", Item, meter.handler(), limit=Limit(key="account_id", concurrency=2))
    await queue.enqueue_many(jobs(7, 40))
    await queue.enqueue_many(
        [Job(type="launch", account_id=100 + i, args=Item(i)) for i in range(20)]
    )
    workers = [make_worker("launch", concurrency=16, consumer=f"w{i}") for i in range(3)]
    async with serving(workers[0]), serving(workers[1]), serving(workers[2]):
        others = lambda: sum(n for k, n in meter.done.items() if k != 7)  # noqa: E731
        await eventually(lambda: others() == 20)
        # 40 jobs at 2 at once, 50 ms each, take a second: most are still to run.
        assert meter.done[7] < 30
        await eventually(lambda: meter.done[7] == 40, within=20)
        await eventually(lambda: sum(w.processed for w in workers) == 60)
    assert meter.most[7] == 2
    assert meter.others_most > 2  # the other accounts ran side by side
    stats = (await queue.stats(["launch"]))[0]
    assert (stats.held, stats.dead, stats.processed) == (0, 0, 60)
    assert await queue.keys("launch") == []


async def test_held_jobs_show_in_stats_and_in_the_busiest_keys(
    registry: Registry, queue: Queue, make_worker: MakeWorker, backend: Backend
) -> None:
    """10 slow jobs of account 7 at concurrency=2: 2 run, 8 are held (stats ``held``, not
    ``waiting``), and the key shows 2 running, 8 waiting; one job of account 8 runs beside."""
    partition_by(backend, "account_id")
    meter = Meter()
    registry.register("launch", Item, meter.handler(), limit=Limit("account_id", 2))
    await queue.enqueue_many(jobs(7, 10) + jobs(8, 1))
    worker = make_worker("launch", concurrency=8)
    async with serving(worker):
        await eventually(lambda: meter.now[7] == 2 and meter.now[8] == 1)

        async def held_is_8() -> bool:
            return (await queue.stats(["launch"]))[0].held == 8

        await eventually(held_is_8)
        stats = (await queue.stats(["launch"]))[0]
        assert stats.waiting == 0
        keys = await queue.keys("launch")
        assert [(k.key, k.running, k.held) for k in keys] == [("7", 2, 8), ("8", 1, 0)]
        meter.release.set()
        await eventually(lambda: worker.processed == 11)
    assert meter.most[7] == 2


async def test_a_rate_spaces_the_starts(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Rate(5 per second, per provider): 20 jobs of one provider start over no less than
    ~3.8 s (one every 200 ms), while a job of another provider is not held behind them."""
    partition_by(backend, "args.provider")
    meter = Meter()
    meter.release.set()
    registry.register("launch", Item, meter.handler(), rate=Rate(5, key="args.provider"))
    await queue.enqueue_many([Job(type="launch", args=Item(i)) for i in range(20)])
    await queue.enqueue(Job(type="launch", account_id=8, args=Item(0, provider="gcp")))
    worker = make_worker("launch", concurrency=16)
    async with serving(worker):
        await eventually(lambda: meter.done[8] == 1, within=2)
        assert len(meter.starts) < 12  # the other provider's job did not wait for the backlog
        await eventually(lambda: worker.processed == 21, within=15)
    assert len(meter.starts) == 20
    assert max(meter.starts) - min(meter.starts) >= 3.7
    # Never more than 5 of the provider's starts in any one second (and a margin of one for
    # the clock's edges).
    starts = sorted(meter.starts)
    assert max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts) <= 7
    assert set(meter.deliveries) == {1}


async def test_a_dead_workers_slots_free_themselves_after_claim_after(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A worker that took both slots of account 7 and died (never freed them, never acked):
    after claim_after (0.5 s) the slots are free, its jobs are recovered, and the held third
    job runs too; never more than 2 at once."""
    partition_by(backend, "account_id")
    meter = Meter()
    meter.release.set()
    registry.register("launch", Item, meter.handler(), limit=Limit("account_id", 2))
    await queue.enqueue_many(jobs(7, 2))
    await backend.ensure_groups(["launch"])
    taken: list[object] = []
    async with asyncio.timeout(10):
        while len(taken) < 2:
            taken += await backend.read(["launch"], "dead-worker", 2 - len(taken), 50)
    rule = FlowRule(concurrency=2, lease_ms=500)
    asks = [Admission(d.entry_id, "7", None, 0) for d in taken]  # type: ignore[attr-defined]
    assert await backend.admit("launch", asks, rule) == ["run", "run"]
    await queue.enqueue_many(jobs(7, 1, start=2))
    worker = make_worker("launch", concurrency=8)
    async with serving(worker):
        await eventually(lambda: worker.processed == 3, within=10)
    assert meter.most[7] <= 2
    assert sum(meter.done.values()) == 3
    assert (await queue.stats(["launch"]))[0].held == 0


async def test_a_held_job_is_not_a_delivery(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """max_deliveries=1 and concurrency=1 per account: 6 jobs of one account are each held
    several times while the others run, and every one runs at its first delivery (none dead)."""
    partition_by(backend, "account_id")
    meter = Meter(hold=0.02)
    meter.release.set()
    registry.register("launch", Item, meter.handler(), limit=Limit("account_id", 1))
    await queue.enqueue_many(jobs(7, 6))
    worker = make_worker("launch", concurrency=8, max_deliveries=1)
    async with serving(worker):
        await eventually(lambda: worker.processed == 6)
    assert meter.deliveries == [1] * 6
    assert meter.most[7] == 1
    assert (await queue.stats(["launch"]))[0].dead == 0


async def test_a_rate_far_above_the_load_holds_nothing_and_a_burst_starts_at_once(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """Rate(100 000/s): 50 jobs read in batches are all admitted at once (starts are timed to
    the millisecond: a batch's jobs within it start now). Rate(1/s per provider, burst=4): 4
    start at once, the 5th a second after."""
    partition_by(backend, "args.provider")
    fast, slow = Meter(), Meter()
    fast.release.set()
    slow.release.set()
    registry.register("launch", Item, fast.handler(), rate=Rate(100_000))
    registry.register("report", Item, slow.handler(), rate=Rate(1, key="args.provider", burst=4))
    await queue.enqueue_many([Job(type="launch", args=Item(i)) for i in range(50)])
    await queue.enqueue_many([Job(type="report", args=Item(i)) for i in range(5)])
    worker = make_worker("launch", "report", concurrency=16)
    async with serving(worker):
        await eventually(lambda: worker.processed == 55, within=10)
    assert worker._gate.held_back == {"wait": 0, "later": 1}
    starts = sorted(slow.starts)
    assert starts[3] - starts[0] < 0.5
    assert starts[4] - starts[0] >= 0.9


async def test_a_limit_holds_across_priority_levels_and_held_jobs_keep_their_level(
    registry: Registry, queue: Queue, make_worker: MakeWorker, backend_kind: str
) -> None:
    """Limit(account_id, 1) on a type given priorities: account 7's jobs at high, default and
    low never run more than 1 at once (the levels share the slots), and a woken high job runs
    from the high level's stream (``pending`` shows it at priority high)."""
    if backend_kind.endswith("partitioned"):
        pytest.skip("priorities are refused on a partitioned type")
    meter = Meter(hold=0.02)
    order: list[int] = []
    handler = meter.handler()
    at_20 = asyncio.Event()
    go_on = asyncio.Event()

    async def run(job: Job[Item], ctx: object) -> None:
        order.append(job.args.n)
        if job.args.n == 20:
            at_20.set()
            await go_on.wait()
        await handler(job, ctx)  # type: ignore[operator]

    registry.register("launch", Item, run, limit=Limit("account_id", 1))
    await queue.enqueue(Job(type="launch", account_id=7, args=Item(0)), priority="low")
    worker = make_worker("launch", concurrency=8)
    async with serving(worker):
        await eventually(lambda: meter.now[7] == 1)  # job 0 runs, holding the key's slot
        await queue.enqueue_many(jobs(7, 3, start=10), priority="low")
        await queue.enqueue_many(jobs(7, 3, start=20), priority="high")
        await queue.enqueue_many(jobs(7, 1, start=30))

        async def held_is_7() -> bool:
            return (await queue.stats(["launch"]))[0].held == 7

        await eventually(held_is_7)
        meter.release.set()
        await eventually(at_20.is_set)
        (running,) = await queue.pending("launch")
        assert running.priority == "high"
        go_on.set()
        await eventually(lambda: worker.processed == 8)
    assert meter.most[7] == 1
    # Held in the order they were read (a worker reads the higher levels first), woken in it.
    assert order[0] == 0
    assert sorted(order[1:]) == [10, 11, 12, 20, 21, 22, 30]


async def test_a_worker_stopping_when_empty_waits_for_its_held_jobs(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """``run(stop_when_empty=True)`` (the demo, a drain): with 6 jobs of one account at
    concurrency=1 most are held at some moment, out of the stream; the worker still runs all
    6 before it stops (held jobs are not "empty")."""
    partition_by(backend, "account_id")
    meter = Meter(hold=0.05)
    meter.release.set()
    registry.register("launch", Item, meter.handler(), limit=Limit("account_id", 1))
    await queue.enqueue_many(jobs(7, 6))
    worker = make_worker("launch", concurrency=8)
    await drain(worker)
    assert worker.processed == 6
    assert meter.most[7] == 1
    assert (await queue.stats(["launch"]))[0].held == 0
