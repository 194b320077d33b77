"""A worker whose stderr goes away (the reader of its log pipe gone: a log collector that
died, ``streamq consume ... | head``) keeps working and still stops on SIGTERM: a log line that
cannot be written is dropped, never raised into the worker."""

from __future__ import annotations

import signal
import subprocess
import sys

from cli_helpers import Cli, wait_for


def test_a_worker_without_its_stderr_still_works_and_stops(cli: Cli) -> None:
    """Read the start-up line, close the pipe, then: jobs are still processed, and SIGTERM
    stops the worker (exit 0) instead of hanging in a log write."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamq", "consume", "noop", "--log-format", "json"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith(b"streamq: consuming noop")
        proc.stderr.close()  # every log line from here on meets a broken pipe
        cli.enqueue("noop", "{}", "--count", "20")
        wait_for(lambda: cli.stats("noop")["processed"] == 20, "the jobs processed")
        assert proc.poll() is None, f"the worker died: exit {proc.returncode}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
