"""``enqueue --delay / --at`` and ``scheduled``, run as operators run them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cli_helpers import Cli, error_lines


def test_enqueue_with_a_delay_is_listed_by_scheduled(cli: Cli) -> None:
    """``enqueue --delay 2s`` puts the job in the schedule: ``scheduled --json`` shows it due in
    about 2 s, ``stats`` counts it, and the table names it."""
    before = datetime.now(UTC)
    (job_id,) = cli.enqueue("noop", "{}", "--delay", "2s")
    (row,) = cli.json("scheduled", "noop")
    assert row["job_id"] == job_id
    assert row["why"] == "delay"
    assert row["deliveries"] == 0
    assert 0 < row["due_in_s"] <= 2
    due = datetime.fromisoformat(row["due_at"])
    assert row["due_at"].endswith("Z")
    assert before < due < before + timedelta(seconds=10)
    stats = cli.stats("noop")
    assert (stats["scheduled"], stats["waiting"]) == (1, 0)
    table = cli.ok("scheduled", "noop")
    assert table.splitlines()[0] == "1 scheduled"
    assert job_id in table
    assert "scheduled" in cli.ok("stats", "noop").splitlines()[0]


def test_enqueue_at_a_time_is_scheduled_until_then(cli: Cli) -> None:
    """``--at`` with ``Z`` or an offset schedules the job at that time (turned into a delay by
    the producer's clock, so within the moment the command took)."""
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    cli.enqueue("noop", "{}", "--at", at.isoformat().replace("+00:00", "Z"))
    cli.enqueue("noop", "{}", "--at", at.astimezone(timezone(timedelta(hours=1))).isoformat())
    rows = cli.json("scheduled", "noop")
    assert len(rows) == 2
    for r in rows:
        assert abs(datetime.fromisoformat(r["due_at"]) - at) < timedelta(seconds=2)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--at", "tomorrow", "is not an ISO time"),
        ("--at", "2026-12-24T18:00:00", "has no time zone"),
        ("--delay", "soon", "is not a duration"),
    ],
)
def test_a_bad_delay_or_time_is_a_one_line_usage_error(
    cli: Cli, option: str, value: str, says: str
) -> None:
    """A bad ``--at`` or ``--delay``: exit 2, one line on stderr, nothing enqueued."""
    done = cli.run("enqueue", "noop", option, value)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, lines
    assert says in lines[0]
    assert done.stdout == ""
