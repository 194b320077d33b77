"""Running ``python -m streamq`` as real subprocesses against a test server, for the CLI tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
#: every command has to answer within this; a hang is a failure, not a stuck suite
COMMAND_TIMEOUT = 30.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for: {what}")


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` (without blank ones)."""
    return [line for line in stderr.splitlines() if line.strip()]


class Cli:
    """Runs streamq commands and ``consume`` processes with one environment; kills them at the end.

    The environment names the test server and the test's prefix, puts ``itjobs`` on the path,
    and points the embedded server's state at a throwaway folder, so nothing here can touch the
    user's own embedded server.
    """

    def __init__(self, url: str, prefix: str, state: Path, logs: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.state = state
        self.logs = logs
        self.env = os.environ | {
            "STREAMQ_REDIS_URL": url,
            "STREAMQ_PREFIX": prefix,
            "STREAMQ_STATE_DIR": str(state),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        }
        for name in ("STREAMQ_HANDLERS", "STREAMQ_DEBUG"):
            self.env.pop(name, None)
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end and capture its output."""
        return subprocess.run(
            [sys.executable, "-m", "streamq", *args],
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str) -> str:
        """Run one command that must succeed; return its stdout."""
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
        return done.stdout

    def json(self, *args: str) -> Any:
        """Run one command with ``--json`` and parse its output."""
        return json.loads(self.ok(*args, "--json"))

    def stats(self, type: str) -> dict[str, Any]:
        """``streamq stats TYPE --json``: the type's row."""
        (row,) = self.json("stats", type)
        assert isinstance(row, dict)
        return row

    def enqueue(self, type: str, args: str = "{}", *extra: str) -> list[str]:
        """``streamq enqueue``: the printed job ids."""
        return self.ok("enqueue", type, "--args", args, *extra).split()

    def consume(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``streamq consume ARGS`` (JSON logs, stderr to a file) and return the process."""
        log = self.logs / f"consume-{len(self.procs)}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamq", "consume", *args, "--log-format", "json"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.procs.append(proc)
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        """What a ``consume`` process wrote to stderr so far."""
        return (self.logs / f"consume-{self.procs.index(proc)}.log").read_text(errors="replace")

    def startup_line(self, proc: subprocess.Popen[bytes]) -> str:
        """The first stderr line of a ``consume`` process (waits for it)."""
        text = wait_for(
            lambda: self.log_of(proc) if "\n" in self.log_of(proc) else None,
            "the start-up line",
        )
        return str(text).splitlines()[0]

    def consumer_of(self, proc: subprocess.Popen[bytes]) -> str:
        """The consumer name a ``consume`` process announced in its start-up line."""
        line = self.startup_line(proc)
        assert "consumer " in line, line
        return line.rsplit("consumer ", 1)[1].rstrip(")")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process, as a crash would, and reap it."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(COMMAND_TIMEOUT)

    def stop_all(self) -> None:
        """SIGKILL whatever still runs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(COMMAND_TIMEOUT)
