"""``streamq consume -p N``: the supervisor and its worker processes, on a real server.

Each test starts the command a user types, looks at what ``streamq workers`` and ``stats``
say, and signals the processes as an init system, a terminal or a crash would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Cli, error_lines, wait_for

#: A short heartbeat (so ``workers`` sees the children at once) and a short claim.
FAST = ("--heartbeat", "200ms", "--claim-after", "2s")


def _children(cli: Cli, proc: subprocess.Popen[bytes], n: int = 2) -> list[dict[str, Any]]:
    """The ``workers --json`` rows of ``proc``'s children, once all ``n`` are there, by index."""

    def rows() -> list[dict[str, Any]]:
        mine = [r for r in cli.json("workers")["workers"] if r["supervisor_pid"] == proc.pid]
        return sorted(mine, key=lambda r: r["child_index"]) if len(mine) == n else []

    return list(wait_for(rows, f"{n} children in `streamq workers`", timeout=30))


def _events(cli: Cli, proc: subprocess.Popen[bytes], name: str) -> list[dict[str, Any]]:
    """The JSON log lines called ``name`` that ``proc`` (and its children) wrote."""
    out = []
    for line in cli.log_of(proc).splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                out.append(event)
    return out


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_two_processes_drain_the_queue_and_show_in_workers(cli: Cli) -> None:
    """-p 2: two children, each its own consumer, drain 300 jobs between them; ``workers``
    shows each with the supervisor's pid and its index; SIGTERM: both drain, exit 0."""
    cli.enqueue("noop", "{}", "--count", "300")
    proc = cli.consume("noop", "-p", "2", *FAST)
    line = cli.startup_line(proc)
    assert line == f"streamq: supervising 2 worker processes for noop (supervisor {proc.pid})"
    rows = _children(cli, proc)
    assert [r["child_index"] for r in rows] == [1, 2]
    assert len({r["consumer"] for r in rows}) == 2
    assert proc.pid not in {r["pid"] for r in rows}
    wait_for(lambda: cli.stats("noop")["processed"] == 300, "300 jobs processed")
    table = cli.ok("workers")
    for r in rows:
        assert f"{r['pid']} ({proc.pid}/{r['child_index']})" in table, table
    by_child = {r["consumer"]: r["processed"] for r in cli.json("workers")["workers"]}
    assert sum(by_child.values()) == 300, by_child

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)
    stopped = _events(cli, proc, "streamq.supervisor.child_stopped")
    assert sorted((e["index"], e["exit_code"]) for e in stopped) == [(1, 0), (2, 0)]
    assert cli.stats("noop")["consumers"] == {}
    assert not [r for r in cli.json("workers")["workers"] if r["supervisor_pid"] == proc.pid]


def test_a_killed_child_is_started_again_and_no_job_is_lost(cli: Cli) -> None:
    """SIGKILL one child in the middle of its jobs: the supervisor logs the death (signal,
    restart delay) and starts a new child in its place; its jobs are claimed and every one
    of them is processed; nothing goes to the dead stream."""
    cli.enqueue("noop", '{"sleep": 0.5}', "--count", "40")
    proc = cli.consume("noop", "-p", "2", "-c", "4", *FAST)
    first, _ = _children(cli, proc)
    wait_for(lambda: cli.json("pending", "noop"), "jobs in flight")
    os.kill(first["pid"], signal.SIGKILL)

    (exited,) = wait_for(
        lambda: _events(cli, proc, "streamq.supervisor.child_exited"), "the death logged"
    )
    assert exited["level"] == "warning"
    assert (exited["index"], exited["child_pid"]) == (1, first["pid"])
    assert (exited["exit_code"], exited["signal"], exited["restart_in_s"]) == (-9, "SIGKILL", 1.0)
    again = wait_for(
        lambda: [
            e for e in _events(cli, proc, "streamq.supervisor.child_started") if e["start"] == 2
        ],
        "child 1 started again",
    )
    assert again[0]["index"] == 1
    assert again[0]["child_pid"] != first["pid"]
    rows = _children(cli, proc)
    assert rows[0]["pid"] == again[0]["child_pid"]

    wait_for(lambda: cli.stats("noop")["processed"] == 40, "all 40 jobs processed", timeout=60)
    row = cli.stats("noop")
    assert (row["waiting"], row["in_flight"], row["dead"]) == (0, 0, 0), row
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)


def test_a_second_signal_stops_every_child_at_once(cli: Cli) -> None:
    """SIGTERM while two long jobs run: the children drain (still alive a moment later, the
    grace is 60 s); a second SIGTERM stops them at once, and both jobs are handed back."""
    cli.enqueue("noop", '{"sleep": 120}', "--count", "2")
    proc = cli.consume("noop", "-p", "2", "-c", "1", "--shutdown-grace", "60s", *FAST)
    _children(cli, proc)
    wait_for(lambda: len(cli.json("pending", "noop")) == 2, "both jobs in flight", timeout=30)

    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: _events(cli, proc, "streamq.supervisor.stopping"), "the first stop logged")
    time.sleep(1.0)
    assert proc.poll() is None, "the supervisor did not wait for its children to drain"
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    stops = _events(cli, proc, "streamq.supervisor.stopping")
    assert [e["at_once"] for e in stops] == [False, True]
    assert len(_events(cli, proc, "streamq.worker.stopping")) >= 2
    row = cli.stats("noop")
    assert row["waiting"] + row["in_flight"] == 2, row
    assert row["dead"] == 0, row
    assert row["processed"] == 0


def test_processes_below_one_is_a_usage_error(cli: Cli) -> None:
    """-p 0 starts nothing: one line, exit 2."""
    done = cli.run("consume", "noop", "-p", "0")
    assert done.returncode == 2, done.stderr
    assert "'--processes' / '-p'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_bad_options_are_found_once_before_any_child_starts(cli: Cli) -> None:
    """A check the worker itself makes (a cap above the concurrency) is made by the
    supervisor's process before it starts anything: one error line, exit 2."""
    done = cli.run("consume", "noop=8", "-c", "4", "-p", "3")
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert line.startswith("streamq: error:"), line
    assert "supervising" not in done.stderr


def test_a_child_usage_error_stops_the_supervisor_with_exit_2(cli: Cli, tmp_path: Path) -> None:
    """A child that exits 2 (its own checks refused the command line) is not restarted
    forever: the supervisor stops the others and exits 2. (The command line ``consume``
    builds is checked before; here the Supervisor is given one a child refuses.)"""
    code = (
        "import sys\n"
        "from streamq._cli.supervisor import Supervisor\n"
        "from streamq._cli._app import configure_logging\n"
        "configure_logging('json', 'info')\n"
        "argv = ['consume', 'nosuchtype', '--handlers', 'handlers']\n"
        "sys.exit(Supervisor(argv, 2, grace=1.0, health_file=None, url=sys.argv[1]).run())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, cli.url],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "no handler registered for nosuchtype" in done.stderr
    assert "streamq.supervisor.usage_error" in done.stderr
    assert "child_exited" not in done.stderr, "a usage error is not a crash to restart"


def test_health_file_follows_every_child(cli: Cli, tmp_path: Path) -> None:
    """--health-file PATH with -p 2: child i keeps PATH.i, the supervisor keeps PATH fresh
    while both children are; one child stopped (SIGSTOP) makes ``streamq health PATH`` fail;
    after SIGCONT it passes again."""
    path = tmp_path / "worker.health"
    proc = cli.consume("noop", "-p", "2", "--heartbeat", "1s", "--health-file", str(path))
    first, second = _children(cli, proc)
    for row in (first, second):
        child = Path(f"{path}.{row['child_index']}")
        wait_for(child.exists, f"{child}")
        assert json.loads(child.read_text())["pid"] == row["pid"]
    wait_for(lambda: cli.run("health", str(path)).returncode == 0, "the supervisor's file fresh")

    os.kill(second["pid"], signal.SIGSTOP)
    try:
        stale = wait_for(
            lambda: (d := cli.run("health", str(path))).returncode == 1 and d,
            "the supervisor's file going stale with child 2 stopped",
        )
        assert "last touched" in stale.stderr
        assert cli.run("health", f"{path}.1").returncode == 0
    finally:
        os.kill(second["pid"], signal.SIGCONT)
    wait_for(lambda: cli.run("health", str(path)).returncode == 0, "fresh again")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_children_stop_when_the_supervisor_is_killed(cli: Cli) -> None:
    """SIGKILL the supervisor (no forwarding possible): the kernel sends each child SIGTERM,
    and they drain and leave rather than run on unsupervised."""
    proc = cli.consume("noop", "-p", "2", "--shutdown-grace", "2s", *FAST)
    rows = _children(cli, proc)
    cli.kill(proc)
    for row in rows:
        wait_for(lambda pid=row["pid"]: _gone(pid), f"child {row['pid']} gone", timeout=30)
    wait_for(
        lambda: not [r for r in cli.json("workers")["workers"] if r["supervisor_pid"] == proc.pid],
        "the children's heartbeats removed",
    )
