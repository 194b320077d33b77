"""Worker processes for the cluster benchmark (``test_bench_cluster.py``), driven over pipes.

One Python worker is bound by its own CPU, so what a cluster (or partitions) can add shows only
with several worker processes. Each process here is started once per benchmark, connects, and
then drains on command, so neither its start-up (imports, connecting, learning the cluster's
slots) nor the fill is in the timed part:

- parent -> child, one JSON object per line on stdin: ``{"cmd": "drain"}`` or ``{"cmd": "quit"}``;
- child -> parent, one line on its original stdout: ``{"ready": PID}`` once connected, then per
  drain ``{"processed": N, "seconds": S, "cpu_seconds": C}`` (its own wall and CPU time).
  Anything else the process prints goes to stderr.

A drain is a fresh ``Worker`` (concurrency 32, ``block=0.01``, ``stop_when_empty``: the
workload of ``test_bench_core``'s consume benchmark) over the given types. It stops once a read
comes back empty with nothing running and every stream of its types has length 0, which is
when every job has been run, acked and deleted, by whichever process ran it.

This module also holds the job types the benchmark uses: ``noop``, and ``noop_a``, ``noop_b``,
``noop_c`` (the same handler under three names whose hash tags fall in the three thirds of the
slot space, so on a 3-master cluster made by ``--cluster create`` each lives on its own master;
the benchmark checks that with the cluster itself).

    python -m benchmarks.cluster_fleet --url URL --prefix P --types noop --partitions '{"noop": 3}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from handlers import noop
from streamq import JobType, Registry

CONCURRENCY = 32
#: As in test_bench_core: bounds the idle tail of ``stop_when_empty`` (see benchmarks/README.md).
WORKER_BLOCK_S = 0.01
THREE_TYPES = ("noop_a", "noop_b", "noop_c")
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0

registry = Registry(
    [noop.JOB_TYPE, *(JobType(name=n, args=noop.NoopArgs, steps=(noop.run,)) for n in THREE_TYPES)]
)


class Fleet:
    """``procs`` worker processes on one server or cluster, under one prefix (parent side)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        types: Sequence[str],
        partitions: dict[str, int],
        procs: int,
        logs: Path,
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        cmd = [sys.executable, "-m", "benchmarks.cluster_fleet", "--url", url, "--prefix", prefix]
        cmd += ["--types", ",".join(types), "--partitions", json.dumps(partitions)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STREAMQ_"))}
        try:
            for i in range(procs):
                log = logs / f"worker-{i}.log"
                with log.open("w") as err:  # the child keeps its own descriptor
                    proc = subprocess.Popen(
                        cmd,
                        cwd=ROOT,
                        env=env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                self.procs.append(proc)
                self.logs.append(log)
            for i in range(procs):
                self._answer(i)  # {"ready": pid}
        except BaseException:
            self.close()
            raise

    def drain(self) -> list[dict[str, Any]]:
        """Every process drains at once; returns when the last one has stopped."""
        for proc in self.procs:
            stdin: IO[str] | None = proc.stdin
            assert stdin is not None
            stdin.write('{"cmd": "drain"}\n')
            stdin.flush()
        return [self._answer(i) for i in range(len(self.procs))]

    def _answer(self, i: int) -> dict[str, Any]:
        stdout = self.procs[i].stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            self.procs[i].wait(10)
            tail = self.logs[i].read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"worker process {self.procs[i].pid} exited ({self.procs[i].returncode}): {tail}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        """Ask each process to quit; kill what has not within a few seconds."""
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write('{"cmd": "quit"}\n')
                    proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


async def _connect(backend: Any, types: Sequence[str]) -> None:
    await backend.ensure_groups(list(types))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve drain commands from stdin until ``quit`` or end of input."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--types", required=True, help="comma-separated job types")
    parser.add_argument("--partitions", default="{}", help='JSON, e.g. {"noop": 3}')
    args = parser.parse_args(argv)
    # The protocol gets the real stdout; fd 1 becomes stderr so that no print reaches the pipe.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import structlog

    from streamq import Worker
    from streamq.backends.redis import RedisBackend

    # As benchmarks/conftest.py configures it for every other benchmark.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )
    types = args.types.split(",")
    loop = asyncio.new_event_loop()
    backend = RedisBackend(args.url, prefix=args.prefix, partitions=json.loads(args.partitions))
    loop.run_until_complete(_connect(backend, types))

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    reply({"ready": os.getpid()})
    try:
        for line in sys.stdin:
            cmd = json.loads(line)["cmd"]
            if cmd == "quit":
                break
            if cmd != "drain":
                raise ValueError(f"unknown command {cmd!r}")
            worker = Worker(backend, registry, types, concurrency=CONCURRENCY, block=WORKER_BLOCK_S)
            cpu0, t0 = time.process_time(), time.perf_counter()
            loop.run_until_complete(worker.run(stop_when_empty=True))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            reply({"processed": worker.processed, "seconds": wall, "cpu_seconds": cpu})
    finally:
        loop.run_until_complete(backend.aclose())
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
