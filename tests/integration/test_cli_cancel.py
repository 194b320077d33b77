"""``streamq cancel TYPE ID``, run as operators run it: a delayed job cancelled, then looked up
and cancelled again; an unknown id is one error line and exit 1."""

from __future__ import annotations

import json
import time
from uuid import uuid4

from cli_helpers import Cli, error_lines
from worker_procs import wait_until


def test_a_delayed_job_cancelled_is_gone_and_looked_up_as_cancelled(cli: Cli) -> None:
    enqueued = cli.run("enqueue", "noop", "--delay", "1h")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    done = cli.run("cancel", "noop", job_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cancelled {job_id}"
    assert cli.stats("noop")["scheduled"] == 0
    looked = cli.run("job", "noop", job_id, "--json")
    assert looked.returncode == 0, looked.stderr
    doc = json.loads(looked.stdout)
    assert doc["state"] == "cancelled"
    assert isinstance(doc["ended_at"], float)
    again = cli.run("cancel", "noop", job_id)
    assert again.returncode == 0, again.stderr
    assert "cancelled already" in again.stdout
    assert cli.stats("noop")["cancelled"] == 1


def test_cancelling_an_unknown_job_is_one_line_and_exit_1(cli: Cli) -> None:
    done = cli.run("cancel", "noop", str(uuid4()))
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 1, lines
    assert "to cancel" in lines[0]
    assert done.stdout == ""


def test_a_running_job_cancelled_from_another_process_stops_within_2_s(cli: Cli) -> None:
    """A noop sleeping 60 s in a `streamq consume` process; `streamq cancel` from another
    process: the job is cancelled (state cancelled) within 2 s, not retried, not dead, and the
    worker's log says so."""
    (job_id,) = cli.enqueue("noop", '{"sleep": 60}')
    worker = cli.consume("noop")
    wait_until(lambda: cli.json("job", "noop", job_id)["state"] == "running", 30, "it runs")
    done = cli.run("cancel", "noop", job_id)
    asked = time.monotonic()  # the request is recorded when the command returns
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cancelling {job_id}: running on ")
    wait_until(lambda: cli.json("job", "noop", job_id)["state"] == "cancelled", 30, "cancelled")
    took = time.monotonic() - asked
    # Each look is a `streamq job` process of its own: `took` is a little over the real time.
    print(f"cancelled after {took:.2f}s")
    assert took < 2.0, took
    stats = cli.stats("noop")
    assert (stats["in_flight"], stats["dead"], stats["retried"]) == (0, 0, 0)
    assert stats["cancelled"] == 1
    wait_until(lambda: "streamq.job.ended_cancelled" in cli.log_of(worker), 10, "logged")
