"""``streamq consume --health-file`` and ``streamq health``: the liveness probe of a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from cli_helpers import Cli, error_lines, wait_for

from streamq._server import PrivateServer

#: heartbeat 1 s: the health command's default limit is then 3 s
BEAT = ("--claim-after", "2s", "--heartbeat", "1s", "--handlers", "itjobs")


def _health(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.run("health", *args)


def test_health_follows_a_running_worker_and_its_stop(cli: Cli, tmp_path: Path) -> None:
    """A running worker's file is fresh (exit 0, max-age 3 heartbeats); SIGSTOPped for longer
    than that it is stale (exit 1, one line); after SIGCONT it is fresh again."""
    path = tmp_path / "worker.health"
    worker = cli.consume("sleepy", *BEAT, "--health-file", str(path))
    wait_for(path.exists, "the health file")
    doc = json.loads(path.read_text())
    assert doc == {"pid": worker.pid, "heartbeat_s": 1.0}

    ok = wait_for(lambda: (d := _health(cli, str(path))).returncode == 0 and d, "a fresh file")
    assert ok.stdout.startswith(f"streamq: ok: {path} touched "), ok.stdout
    assert f"worker {worker.pid}, max 3s" in ok.stdout

    worker.send_signal(signal.SIGSTOP)
    try:
        stale = wait_for(
            lambda: (d := _health(cli, str(path))).returncode == 1 and d,
            "the stopped worker's file going stale",
        )
        [line] = error_lines(stale.stderr)
        assert line.startswith(f"streamq: error: {path}: last touched "), line
        assert "max 3s" in line
    finally:
        worker.send_signal(signal.SIGCONT)
    wait_for(lambda: _health(cli, str(path)).returncode == 0, "the file fresh again")
    assert worker.poll() is None, cli.log_of(worker)


def test_health_file_is_touched_while_the_server_is_gone(
    cli: Cli, private_server: PrivateServer, tmp_path: Path
) -> None:
    """With its server paused (no answers at all), the worker keeps touching its file: a
    Redis outage does not fail the liveness probe."""
    path = tmp_path / "worker.health"
    cli.env["STREAMQ_REDIS_URL"] = private_server.url
    worker = cli.consume("sleepy", *BEAT, "--health-file", str(path))
    wait_for(lambda: "streamq: consuming" in cli.log_of(worker), "the worker's start-up line")
    wait_for(path.exists, "the health file")
    private_server.pause()
    try:
        first = path.stat().st_mtime
        # Several heartbeats while no call the worker makes is answered.
        wait_for(lambda: path.stat().st_mtime >= first + 3, "touches during the outage", 30)
        assert _health(cli, str(path)).returncode == 0
    finally:
        private_server.resume()
    assert worker.poll() is None, cli.log_of(worker)


def test_health_of_a_missing_file_fails_with_one_line(cli: Cli, tmp_path: Path) -> None:
    """No file (no worker, or not started yet): exit 1 and one line naming the option."""
    path = tmp_path / "nothing.health"
    done = _health(cli, str(path), "--max-age", "30s")
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        f"streamq: error: {path}: no such file (is the worker running with --health-file {path}?)"
    ]


def test_health_without_a_heartbeat_in_the_file_needs_max_age(cli: Cli, tmp_path: Path) -> None:
    """A file that does not say its heartbeat (touched by something else): exit 1 without
    --max-age, judged by its age with one."""
    path = tmp_path / "touched.health"
    path.touch()
    done = _health(cli, str(path))
    assert done.returncode == 1
    [line] = error_lines(done.stderr)
    assert "give --max-age" in line
    assert _health(cli, str(path), "--max-age", "1h").returncode == 0
    os.utime(path, (0, 0))
    assert _health(cli, str(path), "--max-age", "1h").returncode == 1


def test_health_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    """No PATH, a bad duration, a zero limit: exit 2 and one line each."""
    path = str(tmp_path / "x.health")
    for args in ((), (path, "--max-age", "soon"), (path, "--max-age", "0s")):
        done = _health(cli, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(error_lines(done.stderr)) == 1, (args, done.stderr)
