"""Flow control at the command line, as operators see it (docs/flow-control.md, "What you
see"): the start-up line of ``consume``, the ``held`` column and field of ``stats``, and
``stats --keys TYPE``, on a real server with a real worker holding jobs back."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import flowjobs
import pytest
import redis
from cli_helpers import Cli, error_lines, wait_for
from worker_procs import sync_client

HANDLERS = ("--handlers", "flowjobs")


@pytest.fixture
def hold(cli: Cli) -> Iterator[redis.Redis | redis.RedisCluster]:
    """The ``flowed`` jobs that say ``hold`` wait in their handler while this is set (and go
    on when the test is done with them)."""
    r = sync_client(cli.url)
    key = flowjobs.runs_key(cli.prefix, "hold")
    r.set(key, 1)
    yield r
    r.delete(key)
    r.close()


def cells(table: str, type_: str) -> dict[str, str]:
    """The ``stats`` table's row of ``type_`` by column name (headers are separated by two
    spaces or more, cells hold no spaces but ``paused``'s, which is last)."""
    header, *rows = table.splitlines()
    names = [h.strip() for h in header.split("  ") if h.strip()]
    (row,) = [r.split(maxsplit=len(names) - 1) for r in rows if r.split()[0] == type_]
    return dict(zip(names, row, strict=True))


def test_held_jobs_show_in_stats_and_stats_keys(
    cli: Cli, hold: redis.Redis | redis.RedisCluster
) -> None:
    """A worker of ``flowed`` (2 per account_id) with 5 held-up jobs of account 7 and 1 of
    account 8: 3 are held (account 7's beyond its 2), which ``stats`` shows in its ``held``
    column and field (not in waiting nor in flight) and ``stats --keys`` per key value, busiest
    first; when the jobs go on every count goes back to 0."""
    proc = cli.consume("flowed", "rated", *HANDLERS, "-c", "8", "--claim-after", "5s")
    line = cli.startup_line(proc)
    assert (
        "flow control: flowed 2 per account_id; rated 2 per account_id, 5/1s per args.provider,"
        in line
    ), line
    job = ("flowed", '{"hold": true}', *HANDLERS)
    ids = cli.enqueue(*job, "--account-id", "7", "--count", "5")
    ids += cli.enqueue(*job, "--account-id", "8")
    assert len(ids) == 6

    row = wait_for(
        lambda: (s := cli.stats("flowed"))["held"] == 3 and s["in_flight"] == 3 and s, "3 held"
    )
    assert (row["waiting"], row["in_flight"], row["held"]) == (0, 3, 3)
    table = cli.ok("stats", "flowed")
    assert cells(table, "flowed")["held"] == "3", table
    assert cells(table, "flowed")["waiting"] == "0", table

    keys = cli.ok("stats", "--keys", "flowed")
    assert keys.splitlines() == ["key  running  held", "7    2        3", "8    1        0"], keys
    assert cli.json("stats", "--keys", "flowed") == [
        {"key": "7", "running": 2, "held": 3},
        {"key": "8", "running": 1, "held": 0},
    ]
    assert cli.json("stats", "--keys", "flowed", "--limit", "1") == [
        {"key": "7", "running": 2, "held": 3}
    ]

    hold.delete(flowjobs.runs_key(cli.prefix, "hold"))
    wait_for(lambda: cli.stats("flowed")["processed"] == 6, "every job done")
    row = cli.stats("flowed")
    assert (row["waiting"], row["in_flight"], row["held"], row["dead"]) == (0, 0, 0, 0)
    assert cli.ok("stats", "--keys", "flowed").strip() == "flowed: no key has a job running or held"
    assert cli.json("stats", "--keys", "flowed") == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)


@pytest.mark.parametrize(
    "args",
    [("stats", "noop", "--keys", "flowed"), ("stats", "--keys", "flowed", "--watch", "1")],
    ids=["with a type", "with watch"],
)
def test_stats_keys_with_types_or_watch_is_a_usage_error(cli: Cli, args: tuple[str, ...]) -> None:
    """``--keys TYPE`` is a view of its own: other types or ``--watch`` with it are one line,
    exit 2."""
    done = cli.run(*args)
    assert done.returncode == 2, done
    assert error_lines(done.stderr) == [
        "streamq: error: --keys TYPE takes no other types and no --watch"
    ], done.stderr
    assert done.stdout == ""


def test_stats_keys_of_an_unknown_type_says_so(cli: Cli) -> None:
    """A type nobody used (or without a limit) has no key running or held: the empty message
    (and ``[]`` with --json), exit 0."""
    assert cli.ok("stats", "--keys", "nosuch").strip() == "nosuch: no key has a job running or held"
    assert cli.json("stats", "--keys", "nosuch") == []
