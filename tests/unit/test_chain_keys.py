"""The unique key a step's follow-up gets by default (JobContext.enqueue): derived from the
parent's id, the step and the call's place in the step, the same on every delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from streamq import ConfigError, Job, JobContext, MemoryBackend
from streamq._codec import CheckpointCodec
from streamq._context import chain_key
from streamq._enqueue import Enqueuer


@dataclass(frozen=True, slots=True)
class Args:
    """Args of the follow-ups."""

    n: int = 0


def delivery(enqueuer: Enqueuer | None, deliveries: int) -> JobContext[Any]:
    """The context of one delivery of parent job ``p-1``, as a worker builds it."""
    parent = Job(type="parent", args=Args(), id="p-1", request_id="req-1")
    return JobContext(
        CheckpointCodec(None, job_type="parent"),
        job_id="p-1",
        job_type="parent",
        deliveries=deliveries,
        steps=2,
        job=parent,
        enqueuer=enqueuer,
    )


def test_chain_key_names_the_parent_the_step_and_the_call() -> None:
    """chain_key is 'chain:{parent id}:{step}:{n}'."""
    assert chain_key("p-1", 0, 0) == "chain:p-1:0:0"
    assert chain_key("p-1", 2, 5) == "chain:p-1:2:5"


async def test_each_call_of_a_delivery_gets_its_own_key_and_a_redelivery_the_same_ones() -> None:
    """Two follow-ups of step 0 and one of step 1 are three jobs; the next delivery's same
    calls are duplicates of them, in the same order; unique_key=None enqueues anew each time."""
    backend = MemoryBackend()
    enqueuer = Enqueuer(backend)

    async def run(ctx: JobContext[Any]) -> list[Any]:
        ids = []
        for step, calls in ((0, 2), (1, 1)):
            ctx.step = step
            for n in range(calls):
                ids.append(await ctx.enqueue(Job(type="child", args=Args(n))))
        ids.append(await ctx.enqueue(Job(type="child", args=Args(9)), unique_key=None))
        return ids

    first = await run(delivery(enqueuer, 1))
    again = await run(delivery(enqueuer, 2))
    assert [i.duplicate for i in first] == [False] * 4
    assert [i.duplicate for i in again] == [True, True, True, False]
    assert again[:3] == first[:3]
    assert len(set(first[:3])) == 3
    assert again[3] != first[3]
    assert (await backend.stats("child")).length == 5


async def test_a_context_made_outside_a_worker_cannot_enqueue() -> None:
    """A JobContext without an enqueuer says so (ConfigError) rather than dropping the job."""
    ctx = delivery(None, 1)
    with pytest.raises(ConfigError, match="cannot enqueue"):
        await ctx.enqueue(Job(type="child", args=Args()))
    with pytest.raises(ConfigError, match="no worker event loop"):
        ctx.enqueue_sync(Job(type="child", args=Args()))
