"""One worker process against ``streamq consume -p 2``: no-op jobs drained per second, and what
limits the second process (the server's CPU, the machine's cores).

Each round, for ``-p 1`` and ``-p 2`` in turn (the order flipping each round, so the shared
machine's drift falls on both): the type is paused, ``JOBS`` noop jobs are enqueued, the
``streamq consume noop`` command starts (as a user types it, through the CLI, with its
supervisor when ``-p 2``) and registers its workers; then the type is resumed and the clock
runs from the first job processed until the stats count every job processed. Measured over
that drain window:

- the rate (jobs per second);
- the server's CPU (``INFO cpu``) as a share of one core: near 100 % the server is the limit;
- the worker processes' CPU per job and as a share of one core (``/proc``: the command's
  process and its children, over the drain window only: no start-up or shutdown in it);
- the machine's cores (``os.cpu_count()``) and its 1-min load.

pytest-benchmark's own figure is the whole round (start, drain, stop) of ``-p 2``; the report is
``extra_info["processes"]`` (``summarize.format_processes`` prints it; the operations panel of
the chart shows the ratio).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.test_bench_core import NOOP
from benchmarks.test_bench_recovery import _wait_until
from benchmarks.test_bench_server_cost import _median_range
from streamq import Queue
from streamq._server import PrivateServer

JOBS = 100_000
CHUNK = 2_000
ROUNDS = 3
PROCESSES = (1, 2)
ROOT = Path(__file__).resolve().parent.parent
STREAMQ = Path(sys.executable).with_name("streamq")


_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children, from ``/proc`` (Linux)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    total = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICK


def _server_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _processed(r: redis.Redis, prefix: str) -> int:
    return int(r.hget(f"{prefix}:{{noop}}:stats", "processed") or 0)


def _round(
    n: int, url: str, prefix: str, r: redis.Redis, loop: asyncio.AbstractEventLoop, queue: Queue
) -> dict[str, float]:
    """One drain of JOBS by ``consume noop -p n``; its figures."""
    loop.run_until_complete(queue.pause("noop", reason="benchmark"))
    for _ in range(JOBS // CHUNK):
        loop.run_until_complete(queue.enqueue_many([NOOP] * CHUNK))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"STREAMQ_REDIS_URL": url, "STREAMQ_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    cmd = [str(STREAMQ), "consume", "noop", "-p", str(n), "--heartbeat", "200ms"]
    cmd += ["--log-format", "json", "--log-level", "warning", "--shutdown-grace", "5s"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until(
            lambda: int(r.scard(f"{prefix}:workers") or 0) >= n, 60, f"{n} workers registered", proc
        )
        start = _processed(r, prefix)
        loop.run_until_complete(queue.resume("noop"))
        # The clock starts at the first job processed: the workers see the resume at their next
        # look at the pause flag, a delay that is not the drain's.
        _wait_until(lambda: _processed(r, prefix) > start, 60, "the first job processed", proc)
        done0 = _processed(r, prefix)
        cpu0, workers0, t0 = _server_cpu(r), _tree_cpu(proc.pid), time.perf_counter()
        _wait_until(
            lambda: _processed(r, prefix) - start >= JOBS, 300, f"{JOBS} jobs processed", proc
        )
        drained = _processed(r, prefix) - done0
        wall = time.perf_counter() - t0
        server = _server_cpu(r) - cpu0
        workers = _tree_cpu(proc.pid) - workers0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, f"consume -p {n} exited {proc.returncode}"
    return {
        "jobs_per_s": drained / wall,
        "server_cpu_share": server / wall,
        "worker_cpu_us_per_job": workers / drained * 1e6,
        "worker_cpu_share": workers / wall,
        "loadavg_1min": os.getloadavg()[0],
    }


def test_processes_p1_vs_p2(
    benchmark: BenchmarkFixture,
    server: PrivateServer,
    prefix: str,
    loop: asyncio.AbstractEventLoop,
    queue: Queue,
) -> None:
    """``consume -p 1`` and ``-p 2``, interleaved; their ratio and what limits it."""
    r = redis.Redis.from_url(server.url)
    figures: dict[int, list[dict[str, float]]] = {n: [] for n in PROCESSES}
    try:
        for k in range(ROUNDS):
            for n in PROCESSES if k % 2 == 0 else PROCESSES[::-1]:
                figures[n].append(_round(n, server.url, prefix, r, loop, queue))

        def last_round() -> None:
            figures[2].append(_round(2, server.url, prefix, r, loop, queue))

        benchmark.pedantic(last_round, rounds=1, iterations=1)
        figures[1].append(_round(1, server.url, prefix, r, loop, queue))
    finally:
        r.close()
    per: dict[str, Any] = {}
    for n, rounds in figures.items():
        per[f"p{n}"] = {
            key: _median_range([x[key] for x in rounds])
            for key in (
                "jobs_per_s",
                "server_cpu_share",
                "worker_cpu_us_per_job",
                "worker_cpu_share",
            )
        }
    # Paired ratios: round i of -p 2 against round i of -p 1 (both in the same stretch of time).
    ratios = [
        b["jobs_per_s"] / a["jobs_per_s"] for a, b in zip(figures[1], figures[2], strict=True)
    ]
    benchmark.group = "processes"
    benchmark.extra_info.update(
        ops_per_round=JOBS,
        unit="jobs",
        processes={
            "jobs_per_round": JOBS,
            "rounds": len(ratios),
            "cores": os.cpu_count(),
            "loadavg_1min_per_round": [x["loadavg_1min"] for x in figures[1] + figures[2]],
            "variants": per,
            "ratio_p2_p1": _median_range(ratios),
        },
    )
