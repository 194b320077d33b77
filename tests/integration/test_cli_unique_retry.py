"""``enqueue --unique-key / --expires``, ``consume --retry-max`` and a retry in ``scheduled``,
run as operators run them."""

from __future__ import annotations

import time

import pytest
from cli_helpers import Cli, error_lines
from worker_procs import wait_until


def test_a_second_enqueue_of_a_unique_key_prints_the_first_id_and_says_duplicate(
    cli: Cli,
) -> None:
    """The first `enqueue --unique-key` prints a new id, the second the same id on stdout and
    "duplicate" on stderr, exit 0; one job waits."""
    first = cli.run("enqueue", "noop", "--unique-key", "reservation:42", "--delay", "1h")
    assert first.returncode == 0, first.stderr
    again = cli.run("enqueue", "noop", "--unique-key", "reservation:42")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert "duplicate" in again.stderr
    assert "duplicate" not in first.stderr
    assert cli.stats("noop")["scheduled"] == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--unique-key", "k", "--count", "2"], "cannot go with --count"),
        (["--unique-for", "1m"], "needs --unique-key"),
        (["--expires", "0s"], "already past"),
        (["--expires", "5s", "--delay", "1m"], "before the job is due"),
        (["--expires", "2026-12-24T18:00:00"], "has no time zone"),
    ],
)
def test_bad_unique_and_expiry_options_are_one_line_usage_errors(
    cli: Cli, args: list[str], says: str
) -> None:
    """Exit 2, one line on stderr, nothing enqueued."""
    done = cli.run("enqueue", "noop", *args)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, lines
    assert says in lines[0]
    assert done.stdout == ""


def test_a_failed_job_waits_in_scheduled_as_a_retry(cli: Cli) -> None:
    """A failing noop under `consume --retry-base 1h --retry-max 1h` waits in the schedule:
    `scheduled --json` says why `retry`, 1 delivery and the error; nothing is in flight."""
    (job_id,) = cli.enqueue("noop", '{"fail": true}')
    cli.consume("noop", "--retry-base", "1h", "--retry-max", "1h")
    rows = wait_until(lambda: cli.json("scheduled", "noop"), 30, "the retry is scheduled")
    (row,) = rows
    assert (row["job_id"], row["why"], row["deliveries"]) == (job_id, "retry", 1)
    assert row["last_error"] == "NoopFailedError: noop asked to fail"
    assert 3000 < row["due_in_s"] <= 3600 * 1.1
    assert cli.json("pending", "noop") == []
    table = cli.ok("scheduled", "noop")
    assert "retry" in table
    assert "NoopFailedError" in table


def test_an_expired_job_is_listed_dead_as_expired(cli: Cli) -> None:
    """`enqueue --expires 1s`, no worker for 1.5 s: the worker dead-letters it as expired."""
    (job_id,) = cli.enqueue("noop", "{}", "--expires", "1s")
    time.sleep(1.5)
    cli.consume("noop")
    rows = wait_until(lambda: cli.json("dead", "list", "noop"), 30, "the job is dead")
    (row,) = rows
    assert (row["job_id"], row["reason"]) == (job_id, "expired")
