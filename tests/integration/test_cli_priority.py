"""``streamq enqueue --priority``: levels from the command line, as operators type them, on a
real server, and what ``stats`` and ``pending`` show of them (docs/flow-control.md,
"Priorities")."""

from __future__ import annotations

import signal

from cli_helpers import Cli, error_lines, wait_for


def test_an_unknown_priority_is_one_line_and_exit_2(cli: Cli) -> None:
    """``--priority urgent`` enqueues nothing: one line naming the levels, exit 2."""
    done = cli.run("enqueue", "noop", "--priority", "urgent")
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert "unknown --priority 'urgent'" in line, line
    assert "high, default, low" in line, line
    assert "no job types" in cli.ok("stats")


def test_enqueue_with_a_priority_shows_in_stats_and_pending(cli: Cli) -> None:
    """Two low jobs, then one high: ``stats`` counts them per level (table and --json), and a
    worker at -c 1 takes the high one first, which ``pending`` and ``job`` show with its
    level."""
    # Long sleeps: the high job must still be running when ``job`` is asked about it, on a slow
    # machine too (the worker stops at once at SIGTERM: --shutdown-grace 0s).
    cli.enqueue("noop", '{"sleep": 60}', "--priority", "low", "--count", "2")
    (high,) = cli.enqueue("noop", '{"sleep": 60}', "--priority", "high")
    row = cli.stats("noop")
    assert row["waiting"] == 3
    assert row["waiting_by_priority"] == {"high": 1, "default": 0, "low": 2}
    table = cli.ok("stats", "noop")
    assert "noop: waiting by priority: high 1, default 0, low 2" in table, table
    proc = cli.consume("noop", "-c", "1", "--shutdown-grace", "0s")
    (job,) = wait_for(lambda: cli.json("pending", "noop"), "the first job in flight")
    assert (job["job_id"], job["priority"]) == (high, "high")
    assert job["entry_id"].endswith("@high"), job
    text = cli.ok("pending", "noop")
    assert "waiting by priority: high 0, default 0, low 2" in text, text
    assert text.splitlines()[2].split()[-1] == "priority", text
    assert text.splitlines()[3].split()[-1] == "high", text
    doc = cli.json("job", "noop", high)
    assert (doc["state"], doc["priority"]) == ("running", "high"), doc
    assert ["priority", "high"] in [
        line.split() for line in cli.ok("job", "noop", high).splitlines()
    ]
    (low,) = cli.enqueue("noop", "{}", "--priority", "low")
    assert cli.json("job", "noop", low)["priority"] == "low"
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
