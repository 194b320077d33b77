"""``streamq demo``: the launch job end to end on the embedded (or given) server."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from streamq import _eventloop
from streamq._inspect import TypeStats
from streamq._job import Job, Principal
from streamq._producer import Queue
from streamq._registry import Registry
from streamq._settings import connect, redact_url, resolve_url
from streamq._views import stats_table
from streamq._worker import Worker

DEMO_PREFIX = "streamq-demo"


def run_demo(
    registry: Registry,
    *,
    jobs: int,
    failing: int,
    url: str | None,
    echo: Callable[[str], None],
) -> None:
    """Enqueue, drain with one worker, print what happened to every job."""
    _eventloop.run(_demo(registry, jobs=jobs, failing=failing, url=url, echo=echo))


async def _demo(
    registry: Registry, *, jobs: int, failing: int, url: str | None, echo: Callable[[str], None]
) -> None:
    resolved = resolve_url(url)
    echo(f"server: {redact_url(resolved)} (keys under {DEMO_PREFIX}:)")
    types = ["launch", "noop"]
    backend = connect(resolved, prefix=DEMO_PREFIX)
    async with Queue(backend, registry=registry) as queue:
        before = {s.type: s for s in await queue.stats(types)}
        principal = Principal(account_number="5678", org_id="1234", user="demo-user")
        providers = ("aws", "azure", "gcp")
        batch: list[Job[object]] = [
            Job(
                type="launch",
                account_id=1,
                identity=principal,
                request_id=f"demo-{i}",
                args={
                    "provider": providers[i % 3],
                    "reservation_id": random.randrange(1, 2**31),
                    "pubkey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKey demo@example",
                    "amount": 1 + i % 3,
                },
            )
            for i in range(jobs)
        ]
        batch += [
            Job(type="noop", account_id=1, identity=principal, args={"fail": True})
            for _ in range(failing)
        ]
        await queue.enqueue_many(batch)
        echo(f"enqueued {jobs} launch jobs and {failing} noop jobs that always fail")
        worker = Worker(
            backend,
            registry,
            types,
            concurrency=32,
            claim_after=2.0,
            heartbeat=0.5,
            retry_base=0.1,
            max_deliveries=3,
            block=0.2,
        )
        started = time.monotonic()
        await worker.run(stop_when_empty=True)
        echo(f"drained in {time.monotonic() - started:.1f}s\n")
        after = await queue.stats(types)
        echo(stats_table([_delta(s, before[s.type]) for s in after]) + "\n")
        dead = await queue.dead("noop", limit=100_000)
        for d in dead[len(dead) - failing :] if failing else []:
            echo(f"dead noop {d.job_id}: {d.reason}; last error: {d.error}")


def _delta(now: TypeStats, then: TypeStats) -> TypeStats:
    """This run's share of the counters (the demo's keys outlive one run)."""
    return TypeStats(
        type=now.type,
        waiting=now.waiting,
        in_flight=now.in_flight,
        oldest_in_flight_s=now.oldest_in_flight_s,
        dead=now.dead - then.dead,
        enqueued=now.enqueued - then.enqueued,
        processed=now.processed - then.processed,
        failed=now.failed - then.failed,
        retried=now.retried - then.retried,
        dead_lettered=now.dead_lettered - then.dead_lettered,
        consumers=now.consumers,
        paused=now.paused,
        paused_since=now.paused_since,
        pause_reason=now.pause_reason,
        cancelled=now.cancelled - then.cancelled,
    )
