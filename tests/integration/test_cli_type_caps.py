"""``streamq consume TYPE=N``: per-type caps from the command line, as operators type them, on a
real server (docs/life-of-a-job.md, "Per-type concurrency")."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Cli, error_lines, wait_for

from streamq import SyncQueue


@pytest.fixture
def cli(redis_url: str, prefix: str, embedded_state: Path, tmp_path: Path) -> Iterator[Cli]:
    """Commands on the session server under this test's prefix; consumers killed at teardown."""
    c = Cli(redis_url, prefix, embedded_state, tmp_path)
    yield c
    c.stop_all()


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """The API on the same server and prefix, to poll what the consumer holds."""
    q = SyncQueue.from_url(redis_url, prefix=prefix)
    yield q
    q.close()


def in_flight(queue: SyncQueue, type: str) -> int:
    """Entries of ``type`` delivered and not yet acked."""
    (s,) = queue.stats([type])
    return int(s.in_flight)


def test_consume_with_a_cap_holds_at_most_that_many_and_says_so(cli: Cli, queue: SyncQueue) -> None:
    """``consume noop=2 launch -c 8``: the start-up line and ``workers`` show the cap, and of
    5 slow noop jobs only 2 are ever in flight."""
    cli.enqueue("noop", '{"sleep": 3}', "--count", "5")
    proc = cli.consume("noop=2", "launch", "-c", "8", "--shutdown-grace", "0s")
    line = cli.startup_line(proc)
    assert re.search(
        r"\(concurrency 8, at most noop=2, done jobs kept 24h, max 100000 per type, "
        r"consumer [^ ]+\)$",
        line,
    ), line
    wait_for(lambda: in_flight(queue, "noop") == 2, "2 noop jobs running")
    # The worker reads again every block (1 s) at most: a third job would be in flight by now.
    time.sleep(1.5)
    assert in_flight(queue, "noop") == 2
    doc = wait_for(lambda: cli.json("workers")["workers"], "the heartbeat record")
    (worker,) = doc
    assert (worker["concurrency"], worker["type_concurrency"]) == (8, {"noop": 2})
    table = cli.ok("workers")
    assert "8 (noop≤2)" in table, table
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)


def test_consume_with_every_type_capped_runs_the_sum_of_the_caps(cli: Cli) -> None:
    """No -c and a cap on every type: the total is the sum of the caps."""
    proc = cli.consume("noop=3", "launch=4")
    line = cli.startup_line(proc)
    assert "(concurrency 7, at most noop=3,launch=4, done jobs kept 24h, " in line, line
    # The start-up line comes before the signal handlers: wait for the worker to run.
    wait_for(lambda: "streamq.worker.started" in cli.log_of(proc), "the worker started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["noop=0"], "'noop=0': the concurrency of noop must be a whole number ≥ 1 (noop=8)"),
        (["noop=x"], "'noop=x': the concurrency of noop must be a whole number ≥ 1 (noop=8)"),
        (["noop="], "'noop=': the concurrency of noop must be a whole number ≥ 1 (noop=8)"),
        (["noop=-1"], "'noop=-1': the concurrency of noop must be a whole number ≥ 1"),
        (["=3"], "'=3': expected TYPE or TYPE=N"),
        (["noop", "noop=2"], "'noop' is given twice"),
        (["nosuch=2"], "no handler registered for nosuch in module 'handlers'"),
        (["noop=16", "-c", "8"], "noop=16 is more than the worker's concurrency (8)"),
    ],
)
def test_bad_caps_are_one_line_and_exit_2(cli: Cli, args: list[str], message: str) -> None:
    """A cap that is not a whole number ≥ 1, a type given twice or unknown, a cap above -c:
    one error line, exit 2, no traceback."""
    done = cli.run("consume", *args)
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert line.startswith("streamq: error: "), line
    assert message in line, line
    assert "Traceback" not in done.stderr
