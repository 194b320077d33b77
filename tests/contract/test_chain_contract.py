"""Chaining, on every backend: a step's ``ctx.enqueue`` (and a sync step's ``ctx.enqueue_sync``)
enqueues its follow-up once however often the parent is delivered; the follow-up inherits the
parent's request id and identity, and its spans share the parent's trace."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from test_contract import TIMEOUT, MakeWorker, serving, stats_of
from waiting import eventually

from streamq import Job, JobContext, Principal, Queue, Registry, Retry

# The one SDK install of the process is tests/unit/test_tracing.py's (it refuses a second).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_tracing import install_sdk

IDENTITY = Principal(account_number="acct-9", org_id="org-3", user="someone")


@dataclass(frozen=True, slots=True)
class Item:
    """Args of the test jobs."""

    n: int


async def _chain_once(
    registry: Registry, queue: Queue, make_worker: MakeWorker, *, sync: bool
) -> None:
    exporter = install_sdk()[0]
    exporter.clear()
    returned: list[Any] = []
    children: list[Job[Item]] = []

    def follow_up(n: int) -> Job[Item]:
        return Job(type="child", args=Item(n))

    if sync:

        @registry.job("parent", Item)
        def parent(job: Job[Item], ctx: JobContext[Any]) -> None:
            returned.append(ctx.enqueue_sync(follow_up(job.args.n)))
            if ctx.deliveries == 1:
                raise Retry(after=0.1)
    else:

        @registry.job("parent", Item)
        async def parent_async(job: Job[Item], ctx: JobContext[Any]) -> None:
            returned.append(await ctx.enqueue(follow_up(job.args.n)))
            if ctx.deliveries == 1:
                raise Retry(after=0.1)

    @registry.job("child", Item)
    async def child(job: Job[Item]) -> None:
        children.append(job)

    parent_id = await queue.enqueue(
        Job(type="parent", args=Item(7), identity=IDENTITY, request_id="req-1")
    )
    async with serving(make_worker("parent", "child")):
        await eventually(lambda: len(returned) == 2 and len(children) >= 1, TIMEOUT)
    first, second = returned
    assert (first.duplicate, second.duplicate, second) == (False, True, first)
    (ran,) = children
    assert (ran.id, ran.args, ran.request_id, ran.identity) == (first, Item(7), "req-1", IDENTITY)
    assert (await stats_of(queue, "child")).enqueued == 1
    spans = exporter.get_finished_spans()
    parent_trace = {s.context.trace_id for s in spans if s.name == "process parent"}
    child_trace = {s.context.trace_id for s in spans if s.name == "process child"}
    assert len(parent_trace) == 1
    assert child_trace == parent_trace
    # The follow-up's send span sits under the parent's delivery span (a type of one step has
    # no step span: the delivery's span is its step's).
    process_ids = {s.context.span_id for s in spans if s.name == "process parent"}
    sends = [s for s in spans if s.name == "send child"]
    assert sends
    assert all(s.parent is not None and s.parent.span_id in process_ids for s in sends)
    assert parent_id != first


async def test_a_step_enqueues_its_follow_up_once_when_delivered_twice(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """An async step that enqueues a follow-up and raises Retry on its first delivery runs
    twice; the second enqueue is a duplicate of the first, one follow-up runs, with the
    parent's request id and identity, in the parent's trace under its delivery's span."""
    await _chain_once(registry, queue, make_worker, sync=False)


async def test_a_sync_step_enqueues_its_follow_up_once_with_enqueue_sync(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """The same from a sync step in its step thread, through ctx.enqueue_sync."""
    await _chain_once(registry, queue, make_worker, sync=True)


async def test_a_follow_up_keeps_what_it_sets_and_may_opt_out_of_the_key(
    registry: Registry, queue: Queue, make_worker: MakeWorker
) -> None:
    """A follow-up's own request id and identity win over the parent's; with unique_key=None
    every delivery of the parent enqueues one more follow-up."""
    children: list[Job[Item]] = []
    own = Principal(account_number="acct-1", user="other")

    @registry.job("parent", Item)
    async def parent(job: Job[Item], ctx: JobContext[Any]) -> None:
        follow = Job(type="child", args=Item(1), identity=own, request_id="req-own")
        await ctx.enqueue(follow, unique_key=None)
        if ctx.deliveries == 1:
            raise Retry(after=0.1)

    @registry.job("child", Item)
    async def child(job: Job[Item]) -> None:
        children.append(job)

    await queue.enqueue(Job(type="parent", args=Item(0), identity=IDENTITY, request_id="req-1"))
    async with serving(make_worker("parent", "child")):
        await eventually(lambda: len(children) == 2, TIMEOUT)
    assert {(c.request_id, c.identity) for c in children} == {("req-own", own)}
