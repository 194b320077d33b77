"""Periodic jobs across processes: three ``streamq consume`` workers of a 1-second schedule
enqueue one job per tick between them, all of them down for 5 s cost one catch-up tick (not
five), and ``streamq schedules`` shows its last tick."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from periodicjobs import registry, seen_key
from typer.testing import CliRunner
from worker_procs import Workers, wait_until

from streamq._cli import app


@pytest.fixture
def workers(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Workers]:
    """``streamq consume beat --handlers periodicjobs`` processes, killed at teardown."""
    w = Workers(redis_url, prefix, tmp_path)
    yield w
    w.stop_all()


def enqueued(workers: Workers) -> int:
    """The ``enqueued`` counter of ``beat``."""
    return int(workers.redis.hget(f"{workers.prefix}:{{beat}}:stats", "enqueued") or 0)


def start_three(workers: Workers) -> list[subprocess.Popen[bytes]]:
    """Three workers of ``beat``, returned once each has said it consumes."""
    procs = [workers.start(types=("beat",), handlers="periodicjobs") for _ in range(3)]
    wait_until(lambda: all(workers.ready(p) for p in procs), 20, "three workers up")
    return procs


def stop(workers: Workers, procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each of ``procs`` and wait for each to exit cleanly."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        assert p.wait(20) == 0, workers.log_of(p)[-2000:]


#: The every(1 s) schedule of ``beat`` and its step in milliseconds.
(BEAT,) = registry.schedules(["beat"])
STEP_MS = round(BEAT.interval * 1000)


def seen_ticks(workers: Workers, start_ms: int, end_ms: int) -> list[int]:
    """The tick times (epoch ms, sorted) of the ``beat`` jobs that ran, from their job ids (a
    tick's id is the same in every worker), looked up among the ticks from start to end."""
    step = STEP_MS
    by_id = {BEAT.job_id(t): t for t in range(start_ms - start_ms % step, end_ms, step)}
    seen = workers.redis.hgetall(seen_key(workers.prefix))
    assert set(seen.values()) == {b"1"}, seen  # no tick ran twice
    return sorted(by_id[i.decode()] for i in seen)


def test_three_workers_enqueue_one_job_per_tick(workers: Workers, redis_url: str) -> None:
    """Three workers of an every(1 s) schedule enqueue 10 +- 1 jobs in 10 s, not 30, and each
    tick's job runs once; `streamq schedules --json` reports the last tick."""
    procs = [workers.start(types=("beat",), handlers="periodicjobs") for _ in range(3)]
    wait_until(lambda: all(workers.ready(p) for p in procs), 20, "three workers up")
    first = enqueued(workers)
    time.sleep(10.0)
    ticks = enqueued(workers) - first
    assert 9 <= ticks <= 11, [workers.log_of(p)[-2000:] for p in procs]
    total = enqueued(workers)
    seen = wait_until(
        lambda: (s := workers.redis.hgetall(seen_key(workers.prefix))) and len(s) >= total and s,
        10,
        "every tick's job ran",
    )
    assert len(seen) == total
    assert set(seen.values()) == {b"1"}  # no tick ran twice
    result = CliRunner().invoke(
        app,
        [
            "schedules",
            "--json",
            "--handlers",
            "periodicjobs",
            "--url",
            redis_url,
            "--prefix",
            workers.prefix,
        ],
    )
    assert result.exit_code == 0, result.output
    beat, digest = json.loads(result.stdout)
    assert beat["type"] == "beat"
    assert beat["every_s"] == 1.0
    assert time.time() - beat["last_tick_at"] < 3
    assert 0 <= beat["next_in_s"] <= 1.0
    assert digest["cron"] == "0 9 * * MON-FRI"
    assert digest["last_tick_at"] is None


def test_all_workers_down_for_5_s_fire_one_catch_up_tick_not_five(workers: Workers) -> None:
    """Three workers stopped for 5 s (at least four ticks missed) and started again: one job
    for the gap, the latest tick's (not one per missed tick), then one a second, none twice."""
    step = STEP_MS
    start_ms = int(time.time() * 1000)
    first = start_three(workers)
    time.sleep(3.0)
    stop(workers, first)
    stopped_ms = int(time.time() * 1000)
    time.sleep(5.0)
    restart_ms = int(time.time() * 1000)
    start_three(workers)
    time.sleep(4.0)
    total = enqueued(workers)
    wait_until(
        lambda: len(workers.redis.hgetall(seen_key(workers.prefix))) >= total,
        10,
        "every enqueued tick's job ran",
    )
    ticks = seen_ticks(workers, start_ms - 2 * step, int(time.time() * 1000) + 2 * step)
    before = [t for t in ticks if t < stopped_ms]
    after = [t for t in ticks if t >= stopped_ms]
    assert len(before) >= 2, ticks
    assert len(after) >= 4, ticks
    # The first tick after the restart is at least five after the last one before the stop (the
    # four or more between never fire) and the latest at the restart, not an older missed
    # one: one job for the whole gap. Before the stop and from it on, every tick fired once.
    assert (after[0] - before[-1]) // step >= 5, (before, after)
    assert after[0] >= restart_ms - step, (restart_ms, after)
    assert [b - a for a, b in itertools.pairwise(before)] == [step] * (len(before) - 1), before
    assert [b - a for a, b in itertools.pairwise(after)] == [step] * (len(after) - 1), after
    # Every job counted as enqueued before the wait ran (a tick enqueued twice would have run
    # twice: seen_ticks fails on that).
    assert total <= len(ticks) <= enqueued(workers), (total, ticks)
