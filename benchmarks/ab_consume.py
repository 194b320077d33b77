"""Interleaved A/B of the consume figure: two source trees, one server, rounds alternating.

    .venv/bin/python -m benchmarks.ab_consume /tmp/old . --rounds 6 --concurrency 32 256

Each round runs, for each tree in turn (the order flips every round), a child process with that
tree first on ``sys.path``: it fills a fresh stream with ``--jobs`` noop jobs (untimed), then one
``Worker`` at the given concurrency drains it (timed, wall clock and process CPU). The fill is
timed too: ``enqueue_many`` of 1 000 jobs a call. The machine's
speed drifts over minutes; alternating the two trees round by round is what makes their ratio
meaningful. Prints each round and the medians, and B/A per concurrency.

``--steps N`` runs a job type of N no-op async steps instead of ``noop`` (one step): with a tree
that records step progress (docs/steps.md), each job of it costs N - 1 records more than in a
tree that does not, and this shows what that comes to beside the same job before. ``--sleep S``
makes each of those steps await ``asyncio.sleep(S)`` first (a step that waits on I/O, as real
steps do).

``--setting-a NAME=NUMBER`` / ``--setting-b NAME=NUMBER`` (repeatable) give one tree's
``Worker`` a setting the other may not have, e.g. ``--setting-b keep_done=0``: the plain ack of
a tree that keeps finished-job records by default, beside a tree from before them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import asyncio, json, os, sys, time, uuid
from dataclasses import dataclass
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
import handlers
from streamq import Job, Queue, Registry, Worker, connect

@dataclass(frozen=True, slots=True)
class Empty:
    pass

SLEEP = float(sys.argv[5])
SETTINGS = json.loads(sys.argv[6])
# A priority level for the jobs (only a tree with priorities takes one): "" for none.
LEVEL = {"priority": sys.argv[7]} if sys.argv[7] else {}

async def step(job):
    if SLEEP:
        await asyncio.sleep(SLEEP)

async def main() -> None:
    url, jobs, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    steps = int(sys.argv[4])
    registry, type_ = handlers.registry, "noop"
    if steps:
        registry, type_ = Registry(), f"steps{steps}"
        registry.register(type_, Empty, *([step] * steps))
    backend = connect(url, prefix="ab" + uuid.uuid4().hex[:8])
    queue = Queue(backend, registry=registry)
    job = Job(type=type_, account_id=1, args={})
    enq = time.perf_counter()
    for _ in range(0, jobs, 1000):
        await queue.enqueue_many([job] * 1000, **LEVEL)
    enq = time.perf_counter() - enq
    await backend.ensure_groups([type_])
    worker = Worker(
        backend, registry, [type_], concurrency=concurrency, block=0.05, **SETTINGS
    )
    cpu, wall = time.process_time(), time.perf_counter()
    await worker.run(stop_when_empty=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert worker.processed == jobs, worker.processed
    await backend.aclose()
    print(json.dumps({
        "jobs_per_s": jobs / wall,
        "cpu_us_per_job": cpu / jobs * 1e6,
        "enqueued_per_s": jobs / enq,
    }))

asyncio.run(main())
"""


def _run(
    tree: Path,
    url: str,
    jobs: int,
    concurrency: int,
    steps: int,
    sleep: float,
    settings: dict[str, float],
    priority: str = "",
) -> dict[str, float]:
    env = os.environ | {"PYTHONPATH": str(tree), "STREAMQ_UVLOOP": "0"}
    args = [url, str(jobs), str(concurrency), str(steps), str(sleep), json.dumps(settings)]
    args.append(priority)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="tree A (the baseline)")
    parser.add_argument("b", type=Path, help="tree B")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 256])
    parser.add_argument(
        "--steps", type=int, default=0, help="a type of this many no-op steps, not noop"
    )
    parser.add_argument("--sleep", type=float, default=0.0, help="each --steps step sleeps first")
    for side in ("a", "b"):
        parser.add_argument(
            f"--setting-{side}",
            action="append",
            default=[],
            metavar="NAME=NUMBER",
            help=f"a Worker setting for tree {side.upper()} only (repeatable)",
        )
        parser.add_argument(
            f"--priority-{side}",
            default="",
            metavar="LEVEL",
            help=f"tree {side.upper()}'s jobs enqueued at this priority (high, default, low)",
        )
    opts = parser.parse_args()
    levels = {"A": opts.priority_a, "B": opts.priority_b}
    settings = {
        "A": _settings(opts.setting_a, parser),
        "B": _settings(opts.setting_b, parser),
    }

    from streamq._server import PrivateServer

    trees = {"A": opts.a.resolve(), "B": opts.b.resolve()}
    with tempfile.TemporaryDirectory() as tmp, PrivateServer(Path(tmp), appendonly=False) as srv:
        for c in opts.concurrency:
            rates: dict[str, list[float]] = {"A": [], "B": []}
            cpus: dict[str, list[float]] = {"A": [], "B": []}
            enqs: dict[str, list[float]] = {"A": [], "B": []}
            for r in range(opts.rounds):
                order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
                for side in order:
                    got = _run(
                        trees[side],
                        srv.url,
                        opts.jobs,
                        c,
                        opts.steps,
                        opts.sleep,
                        settings[side],
                        levels[side],
                    )
                    rates[side].append(got["jobs_per_s"])
                    cpus[side].append(got["cpu_us_per_job"])
                    enqs[side].append(got["enqueued_per_s"])
                    print(
                        f"c{c} round {r} {side}: {got['jobs_per_s']:.0f} jobs/s, "
                        f"{got['cpu_us_per_job']:.1f} us CPU/job; "
                        f"enqueue_many {got['enqueued_per_s']:.0f} jobs/s",
                        flush=True,
                    )
            a, b = statistics.median(rates["A"]), statistics.median(rates["B"])
            ca, cb = statistics.median(cpus["A"]), statistics.median(cpus["B"])
            print(
                f"c{c}: A {a:.0f} jobs/s ({ca:.1f} us/job), B {b:.0f} jobs/s ({cb:.1f} us/job), "
                f"B/A {b / a:.3f}; per-round B/A "
                + ", ".join(f"{y / x:.2f}" for x, y in zip(rates["A"], rates["B"], strict=True))
            )
            ea, eb = statistics.median(enqs["A"]), statistics.median(enqs["B"])
            print(
                f"enqueue_many (1000 a call): A {ea:.0f} jobs/s, B {eb:.0f} jobs/s, "
                f"B/A {eb / ea:.3f}"
            )


def _settings(given: list[str], parser: argparse.ArgumentParser) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in given:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            parser.error(f"a setting is NAME=NUMBER, not {item!r}")
    return out


if __name__ == "__main__":
    main()
