"""Recovery time: from SIGKILL of a worker to its in-flight jobs starting again on another.

Per round (``ROUNDS`` per ``claim_after`` value), on a key prefix of its own:

1. worker A starts (``streamq consume hold --handlers benchmarks.recovery_jobs -c 32
   --claim-after C --heartbeat C/6``, a real process, as in production);
2. ``JOBS`` ``hold`` jobs are enqueued; A reads them all and their handlers start and sleep
   (``HOLD_S``, far longer than the round). The setup waits until XPENDING shows all of them on
   A's consumer and every handler has recorded its start;
3. worker B starts with the same flags and reads nothing (every entry is delivered already):
   the live worker of a fleet, its recovery pass already running. Round k then waits k/ROUNDS
   of B's recovery pass interval before the kill, so the kill falls at a different phase of
   B's passes in each round, as it would in a fleet (killed right after B is up, every round
   would hit the same phase: B's passes would line up with the moment the entries become
   claimable, and each round would give the same figure);
4. timed: A is SIGKILLed; then the benchmark polls the list the handler appends to
   (``benchmarks/recovery_jobs.py``) until each job has started again in B's process. A job's
   recovery time is its start on B (``time.time_ns()`` in the handler) minus the kill time.

What bounds it: A's heartbeat resets the idle time of its entries every ``heartbeat``, so at the
kill they are 0..heartbeat idle; they become claimable ``claim_after`` minus that later, and B's
recovery pass (every ``claim_after / 4``, at most 10 s, in ``Worker._recover_loop`` today)
claims them at its next pass. Expected: between about ``claim_after - heartbeat`` and
``claim_after + claim_after / 4``. The idle times at the kill (XPENDING) are recorded too.

There is no raw redis-py baseline: the reference is the configured ``claim_after``. The figures
go to ``extra_info["recovery"]``; pytest-benchmark's own time is kill -> the last job restarted
(plus up to one 10 ms poll). The heartbeat is ``claim_after / 6``, the CLI defaults' ratio
(60 s / 10 s); the defaults themselves would make one round last over a minute.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.recovery_jobs import HoldArgs, started_key
from benchmarks.recovery_jobs import registry as hold_registry
from streamq import Job, Queue, RedisBackend
from streamq._server import PrivateServer

#: claim_after values compared, in seconds; the heartbeat is claim_after / HEARTBEAT_DIVISOR.
CLAIM_AFTER_S = [2.0, 6.0]
HEARTBEAT_DIVISOR = 6
#: Jobs in flight on the killed worker, rounds per claim_after, and how long each job sleeps.
JOBS = 16
ROUNDS = 4
HOLD_S = 600.0
CONCURRENCY = 32
#: The recovery pass interval of ``Worker._recover_loop`` (claim_after / 4, 50 ms .. 10 s): for
#: the expected range in the report, and to spread the kill over the phases of B's passes.
PASS_SHARE, PASS_MIN_S, PASS_MAX_S = 0.25, 0.05, 10.0
POLL_S = 0.01
ROOT = Path(__file__).resolve().parent.parent
STREAMQ = Path(sys.executable).with_name("streamq")


class _Fleet:
    """``streamq consume`` processes on the benchmark's server; SIGKILLs what is left at close."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, prefix: str, claim_after: float) -> subprocess.Popen[bytes]:
        """One worker of ``hold`` jobs under ``prefix``, ready (connected) when this returns."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env |= {"STREAMQ_REDIS_URL": self.url, "STREAMQ_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
        log_path = self.logs / f"worker-{len(self.procs)}.log"
        cmd = [str(STREAMQ), "consume", "hold", "--handlers", "benchmarks.recovery_jobs"]
        cmd += ["--concurrency", str(CONCURRENCY), "--claim-after", f"{claim_after}s"]
        cmd += ["--heartbeat", f"{claim_after / HEARTBEAT_DIVISOR}s"]
        cmd += ["--log-format", "json", "--log-level", "warning"]
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        _wait_until(
            lambda: "streamq: consuming" in log_path.read_text(errors="replace"),
            30.0,
            f"worker {proc.pid} to start (log: {log_path})",
            proc,
        )
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def _wait_until(
    check: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker {proc.pid} exited ({proc.returncode}) waiting for {what}")
        time.sleep(POLL_S)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _starts(r: redis.Redis, prefix: str) -> list[tuple[int, int, int]]:
    """(seq, pid, time_ns) of every handler start so far, in order."""
    raw: list[bytes] = r.lrange(started_key(prefix), 0, -1)  # type: ignore[assignment]
    out = []
    for item in raw:
        seq, pid, ns = item.split()
        out.append((int(seq), int(pid), int(ns)))
    return out


def _pending_by_consumer(r: redis.Redis, key: str, group: str) -> dict[str, int]:
    summary: Any = r.xpending(key, group)
    return {_text(c["name"]): int(c["pending"]) for c in summary["consumers"]}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def fleet(server: PrivateServer, tmp_path: Path) -> Iterator[_Fleet]:
    """The worker processes of one benchmark."""
    f = _Fleet(server.url, tmp_path)
    yield f
    f.close()


@pytest.fixture
def sync_redis(server: PrivateServer) -> Iterator[redis.Redis]:
    """A blocking client for polling from the benchmark's synchronous rounds."""
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


async def _enqueue(url: str, prefix: str) -> tuple[str, str]:
    """JOBS hold jobs under ``prefix``; returns the stream's key and the group's name."""
    backend = RedisBackend(url, prefix=prefix)
    async with Queue(backend, registry=hold_registry) as queue:
        await queue.enqueue_many(
            Job(type="hold", args=HoldArgs(seq=i, sleep=HOLD_S)) for i in range(JOBS)
        )
    return backend.jobs_key("hold"), backend.group


@pytest.mark.usefixtures("raw")  # empties the database afterwards
@pytest.mark.parametrize("claim_after", CLAIM_AFTER_S)
def test_recovery_after_sigkill(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    server: PrivateServer,
    prefix: str,
    fleet: _Fleet,
    sync_redis: redis.Redis,
    claim_after: float,
) -> None:
    """SIGKILL a worker holding JOBS jobs; time until each runs again on a live worker."""
    benchmark.group = f"recovery claim_after {claim_after:g}s"
    heartbeat = claim_after / HEARTBEAT_DIVISOR
    pass_interval = min(max(claim_after * PASS_SHARE, PASS_MIN_S), PASS_MAX_S)
    rounds: list[dict[str, Any]] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        for p in fleet.procs:  # the previous round's survivor
            if p.poll() is None:
                p.kill()
                p.wait(10)
        round_prefix = f"{prefix}r{len(rounds)}"
        victim = fleet.start(round_prefix, claim_after)
        key, group = loop.run_until_complete(_enqueue(server.url, round_prefix))

        def all_running_on_victim() -> bool:
            starts = _starts(sync_redis, round_prefix)
            held = _pending_by_consumer(sync_redis, key, group)
            return (
                len(starts) == JOBS
                and {pid for _, pid, _ in starts} == {victim.pid}
                and list(held.values()) == [JOBS]
            )

        _wait_until(all_running_on_victim, 30.0, f"{JOBS} jobs running on the victim", victim)
        survivor = fleet.start(round_prefix, claim_after)
        time.sleep(len(rounds) / ROUNDS * pass_interval)  # this round's phase of B's passes
        return (victim, survivor, round_prefix, key, group), {}

    def kill_and_wait(
        victim: subprocess.Popen[bytes],
        survivor: subprocess.Popen[bytes],
        round_prefix: str,
        key: str,
        group: str,
    ) -> None:
        idle: Any = sync_redis.xpending_range(key, group, "-", "+", JOBS)
        killed_ns = time.time_ns()
        os.kill(victim.pid, signal.SIGKILL)

        def restarted() -> list[tuple[int, int, int]] | None:
            again = [s for s in _starts(sync_redis, round_prefix) if s[1] == survivor.pid]
            return again if len(again) >= JOBS else None

        again = _wait_until(restarted, claim_after * 3 + 10, "the jobs to restart", survivor)
        victim.wait(10)
        assert sorted(seq for seq, _, _ in again) == list(range(JOBS)), "a job ran twice or not"
        rounds.append(
            {
                "recovery_s": sorted(round((ns - killed_ns) / 1e9, 4) for _, _, ns in again),
                "idle_at_kill_ms": sorted(int(e["time_since_delivered"]) for e in idle),
                "loadavg_1min": round(os.getloadavg()[0], 2),
            }
        )

    benchmark.pedantic(kill_and_wait, setup=setup, rounds=ROUNDS, iterations=1)
    every = sorted(s for r in rounds for s in r["recovery_s"])
    benchmark.extra_info.update(
        unit="recovery",
        recovery={
            "claim_after_s": claim_after,
            "heartbeat_s": round(heartbeat, 3),
            "pass_interval_s": pass_interval,
            "expected_s": [round(claim_after - heartbeat, 3), claim_after + pass_interval],
            "jobs": JOBS,
            "rounds": rounds,
            "min_s": every[0],
            "median_s": round(statistics.median(every), 4),
            "max_s": every[-1],
            "median_over_claim_after": round(statistics.median(every) / claim_after, 3),
        },
    )
