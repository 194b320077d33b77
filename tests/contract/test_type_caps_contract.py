"""Per-type concurrency in one worker (``Worker(type_concurrency=...)``): a capped type never
holds more than its cap of the worker's slots, measured by the handlers themselves, and a full
capped type does not hold back the worker's other types (docs/life-of-a-job.md, "Per-type
concurrency")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from test_contract import serving
from waiting import eventually

from streamq import Backend, Job, Queue, Registry, Worker

MakeWorker = Callable[..., Worker]


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


@dataclass
class Gauge:
    """How many handlers of one type run right now, the most seen at once, and how many ran.
    A handler waits for ``release``, then ``hold`` seconds, before it returns."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    hold: float = 0.0
    now: int = 0
    most: int = 0
    started: int = 0
    done: int = 0

    def register(self, registry: Registry, type_: str) -> None:
        """A handler of ``type_`` that measures itself here."""

        async def handler(job: Job[Item]) -> None:
            self.now += 1
            self.started += 1
            self.most = max(self.most, self.now)
            try:
                await self.release.wait()
                await asyncio.sleep(self.hold)
            finally:
                self.now -= 1
                self.done += 1

        registry.register(type_, Item, handler)


async def test_a_capped_type_holds_at_most_its_cap_while_the_others_run_beside_it(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """launch capped at 2, noop uncapped, -c 16: a backlog of slow launch jobs never runs more
    than 2 at once, and noop jobs enqueued after the backlog run 14 at once (the rest of the
    slots) and all finish while the launch jobs are still held up."""
    launch, noop = Gauge(), Gauge()
    launch.register(registry, "launch")
    noop.register(registry, "noop")
    await queue.enqueue_many([Job(type="launch", args=Item(n)) for n in range(12)])
    await queue.enqueue_many([Job(type="noop", args=Item(n)) for n in range(20)])
    worker = make_worker("launch", "noop", concurrency=16, type_concurrency={"launch": 2})
    async with serving(worker):
        # The other 14 slots fill with noop jobs: a full launch does not block their reads.
        await eventually(lambda: launch.now == 2 and noop.now == 14)
        assert worker.in_flight == 16
        noop.release.set()
        await eventually(lambda: noop.done == 20)
        # Every noop ran while 2 launch jobs held their slots, and no third one started.
        assert (launch.started, launch.done) == (2, 0)
        launch.release.set()
        await eventually(lambda: launch.done == 12)
        await eventually(lambda: worker.processed == 32)
    assert launch.most == 2
    assert noop.most == 14


async def test_a_full_capped_type_gets_its_freed_slots_back_while_the_others_are_idle(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """With the uncapped type idle (its reads block, here for up to 5 s), the capped type's
    backlog still runs on: each finished job's slot is read into again within a short block,
    not the worker's ``block``, and never more than the cap at once."""
    launch = Gauge(hold=0.02)
    launch.register(registry, "launch")
    Gauge().register(registry, "noop")
    launch.release.set()
    await queue.enqueue_many([Job(type="launch", args=Item(n)) for n in range(30)])
    worker = make_worker(
        "launch", "noop", concurrency=16, type_concurrency={"launch": 3}, block=5.0
    )
    async with serving(worker):
        # At one 5 s block per slot freed this would take minutes.
        await eventually(lambda: worker.processed == 30, within=8.0)
    assert launch.done == 30
    assert launch.most == 3


async def test_recovery_claims_no_more_of_a_capped_type_than_its_room(
    backend: Backend, registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A dead worker's 6 launch entries: the recovery pass of a worker with launch capped at 2
    takes them over 2 at a time, however many passes run meanwhile."""
    launch = Gauge()
    launch.register(registry, "launch")
    await queue.enqueue_many([Job(type="launch", args=Item(n)) for n in range(6)])
    await backend.ensure_groups(["launch"])
    taken: list[object] = []
    async with asyncio.timeout(10):
        while len(taken) < 6:  # a partitioned type may answer a part per read
            taken += await backend.read(["launch"], "dead-worker", 6 - len(taken), 50)
    worker = make_worker("launch", concurrency=8, type_concurrency={"launch": 2})
    async with serving(worker):
        await eventually(lambda: launch.now == 2)
        # Several recovery passes (every claim_after / 4) find 4 entries idle, and claim none.
        await asyncio.sleep(worker.claim_after * 2)
        assert launch.started == 2
        launch.release.set()
        await eventually(lambda: worker.processed == 6)
    assert launch.most == 2


async def test_the_heartbeat_record_carries_the_caps(
    queue: Queue, registry: Registry, make_worker: MakeWorker
) -> None:
    """``streamq workers`` reads a worker's caps from its heartbeat record (none: empty)."""
    Gauge().register(registry, "launch")
    Gauge().register(registry, "noop")
    # Every type capped and no total given: the total is the sum of the caps.
    capped = make_worker(
        "launch", "noop", concurrency=None, type_concurrency={"launch": 2, "noop": 5}
    )
    plain = make_worker("noop", consumer="plain")
    async with serving(capped), serving(plain):

        async def both_beat() -> bool:
            return len(await queue.workers()) == 2

        await eventually(both_beat)
        records = {r["id"]: r for r in await queue.workers()}
    assert records[capped.consumer]["type_concurrency"] == "launch=2,noop=5"
    assert records[capped.consumer]["concurrency"] == "7"
    assert records["plain"]["type_concurrency"] == ""
    assert records["plain"]["concurrency"] == "8"
