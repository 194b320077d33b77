"""Finished jobs through the CLI, as operators see them: `streamq consume` keeps a record of
each job it finishes (`streamq job` says done, with when, how long and the consumer; `cancel`
says there is nothing to cancel), and `--keep-done 0` keeps none."""

from __future__ import annotations

import signal

from cli_helpers import Cli, error_lines
from worker_procs import wait_until


def test_a_job_finished_by_streamq_consume_is_done(cli: Cli) -> None:
    (job_id,) = cli.enqueue("noop", '{"sleep": 0.3}')
    worker = cli.consume("noop")
    consumer = cli.consumer_of(worker)
    assert "done jobs kept 24h, max 100000 per type" in cli.startup_line(worker)
    wait_until(lambda: cli.json("job", "noop", job_id)["state"] == "done", 30, "it is done")
    doc = cli.json("job", "noop", job_id)
    assert doc["consumer"] == consumer
    assert doc["deliveries"] == 1
    assert 0.29 <= doc["duration_s"] < 30
    assert isinstance(doc["ended_at"], float)
    text = cli.run("job", "noop", job_id)
    assert text.returncode == 0, text.stderr
    rows = dict(line.split(None, 1) for line in text.stdout.splitlines() if " " in line)
    assert rows["state"].strip() == "done"
    assert rows["consumer"].strip() == consumer
    cancel = cli.run("cancel", "noop", job_id)
    assert cancel.returncode == 1
    assert error_lines(cancel.stderr) == [
        f"streamq: error: {job_id} is done (it finished: nothing to cancel)"
    ]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, cli.log_of(worker)


def test_keep_done_0_keeps_no_record(cli: Cli) -> None:
    (job_id,) = cli.enqueue("noop")
    worker = cli.consume("noop", "--keep-done", "0")
    assert "no done-job records" in cli.startup_line(worker)
    wait_until(lambda: cli.stats("noop")["processed"] == 1, 30, "it ran")
    assert cli.json("job", "noop", job_id)["state"] == "unknown"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, cli.log_of(worker)


def test_a_bad_keep_done_is_a_usage_error(cli: Cli) -> None:
    for args in (["--keep-done", "soon"], ["--keep-done-max", "0"]):
        done = cli.run("consume", "noop", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
