"""Interleaved plain vs capped consume on one tree: what the per-type caps' read path costs.

    .venv/bin/python -m benchmarks.caps_consume --rounds 6 --concurrency 32 256

Each round fills a fresh stream with ``--jobs`` noop jobs (untimed) and drains it with one
``Worker`` at the given concurrency (timed, wall clock and process CPU), once without caps and
once with ``type_concurrency={"noop": concurrency}``: the capped read path (a share per type
and a count of what is held per type, per read) at a cap that never limits. The order flips
every round. Prints the medians and capped/plain per concurrency (docs/life-of-a-job.md,
"Per-type concurrency").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import structlog

import handlers
from streamq import Job, Queue, Worker, connect
from streamq._server import PrivateServer


async def _drain(url: str, jobs: int, concurrency: int, capped: bool) -> tuple[float, float]:
    """Fill a fresh stream and drain it; (jobs/s, us of CPU per job)."""
    backend = connect(url, prefix="caps" + uuid.uuid4().hex[:8])
    queue = Queue(backend, registry=handlers.registry)
    job = Job(type="noop", account_id=1, args={})
    for _ in range(0, jobs, 1000):
        await queue.enqueue_many([job] * 1000)
    await backend.ensure_groups(["noop"])
    caps = {"noop": concurrency} if capped else None
    worker = Worker(
        backend,
        handlers.registry,
        ["noop"],
        concurrency=concurrency,
        type_concurrency=caps,
        block=0.05,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    await worker.run(stop_when_empty=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert worker.processed == jobs, worker.processed
    await backend.aclose()
    return jobs / wall, cpu / jobs * 1e6


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 256])
    opts = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp, PrivateServer(Path(tmp), appendonly=False) as srv:
        for c in opts.concurrency:
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for r in range(opts.rounds):
                for capped in (False, True) if r % 2 == 0 else (True, False):
                    runs[capped].append(asyncio.run(_drain(srv.url, opts.jobs, c, capped)))
            rate = {k: statistics.median(x for x, _ in v) for k, v in runs.items()}
            cpu = {k: statistics.median(y for _, y in v) for k, v in runs.items()}
            print(
                f"c{c}: plain {rate[False]:.0f} jobs/s ({cpu[False]:.1f} us/job), "
                f"capped {rate[True]:.0f} jobs/s ({cpu[True]:.1f} us/job), "
                f"capped/plain {rate[True] / rate[False]:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
