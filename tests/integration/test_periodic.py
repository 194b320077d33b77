"""Periodic jobs across processes: three ``streamq consume`` workers of a 1-second schedule
enqueue one job per tick between them, and ``streamq schedules`` shows its last tick."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from periodicjobs import seen_key
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
