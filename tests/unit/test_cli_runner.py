"""The command line through typer's test runner: help, version, durations, --json schemas."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner, Result

from handlers import registry
from streamq import Job, Queue, __version__
from streamq._cli import app
from streamq._cli._app import parse_duration
from streamq._worker import Worker
from streamq.backends.redis import RedisBackend
from streamq.exceptions import StreamqError

# The documented schemas (docs/cli-json.md), keys in the order they are printed.
STATS_KEYS = ["type", "waiting", "in_flight", "oldest_in_flight_s", "dead", "enqueued"]
STATS_KEYS += ["processed", "failed", "retried", "cancelled", "dead_lettered", "consumers"]
STATS_KEYS += ["scheduled", "held"]
STATS_KEYS += ["paused", "paused_since", "pause_reason", "waiting_by_priority"]
PENDING_KEYS = ["job_id", "entry_id", "consumer", "idle_s", "deliveries", "priority"]
DEAD_KEYS = ["job_id", "dead_id", "entry_id", "reason", "error", "deliveries", "dead_at"]
JOB_KEYS = ["type", "account_id", "org_id", "account_number", "user", "request_id", "args"]
WORKER_KEYS = ["consumer", "host", "pid", "types", "concurrency", "in_flight", "processed"]
WORKER_KEYS += ["heartbeat_age_s", "paused", "type_concurrency", "supervisor_pid", "child_index"]


def _command_paths() -> list[tuple[str, ...]]:
    """Every leaf command of the app, as the words that invoke it (``("dead", "list")``)."""
    paths: list[tuple[str, ...]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        subcommands = getattr(cmd, "commands", None)
        if not subcommands:
            paths.append(path)
            return
        for name, sub in sorted(subcommands.items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


COMMANDS = _command_paths()


@pytest.fixture
def env(redis_url: str, prefix: str, tmp_path: Any) -> dict[str, str]:
    """The test server and this test's prefix; any embedded server would live in tmp_path."""
    return {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_PREFIX": prefix,
        "STREAMQ_STATE_DIR": str(tmp_path / "never-used"),
    }


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the app in-process with ``args``."""
    return CliRunner().invoke(app, list(args), env=env)


def ok(*args: str, env: dict[str, str]) -> str:
    """Run a command that must succeed; return its stdout."""
    result = invoke(*args, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def test_version() -> None:
    """--version prints the package version and exits 0."""
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"streamq {__version__}"


def test_every_command_is_walked() -> None:
    """The help test below covers the commands the issue lists (walked from the app itself)."""
    expected = {
        ("enqueue",),
        ("stats",),
        ("pending",),
        ("recover",),
        ("consume",),
        ("demo",),
        ("workers",),
        ("dead", "list"),
        ("dead", "show"),
        ("dead", "retry"),
        ("dead", "purge"),
        ("server", "start"),
        ("server", "stop"),
        ("server", "status"),
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_of_every_command_has_an_example(path: tuple[str, ...]) -> None:
    """--help of each command exits 0 and shows an example."""
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Example:" in result.stdout
    assert f"streamq {' '.join(path)}" in result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("2.5", 2.5), ("0", 0.0)],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    """Durations: ms, s, m, h suffixes and plain (fractional) seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["xx", "5 d", "", "-1s", "1.5.2s", "s"])
def test_parse_duration_rejects(text: str) -> None:
    """A malformed duration is a BadParameter (a usage error)."""
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


def test_bad_duration_is_a_usage_error(env: dict[str, str]) -> None:
    """A malformed --min-idle exits 2 and says what a duration looks like."""
    result = invoke("pending", "noop", "--min-idle", "xx", env=env)
    assert result.exit_code == 2
    assert "not a duration" in result.stderr


def test_unreachable_server_is_a_streamq_error(env: dict[str, str]) -> None:
    """An unreachable server surfaces as a StreamqError whose message hides the password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://user:s3cret@127.0.0.1:{port}/0"
    result = invoke("stats", "--json", env=env | {"STREAMQ_REDIS_URL": url})
    assert result.exit_code == 1
    assert isinstance(result.exception, StreamqError)
    assert "redis://user:***@127.0.0.1" in str(result.exception)
    assert "s3cret" not in str(result.exception)


def test_enqueue_prints_ids_and_stats_json_schema(env: dict[str, str]) -> None:
    """enqueue prints one id per job; stats --json has the documented keys and counts."""
    ids = ok("enqueue", "noop", "--args", '{"sleep": 0.1}', "--count", "3", env=env).split()
    assert len(ids) == len(set(ids)) == 3
    rows = json.loads(ok("stats", "--json", env=env))
    assert [r["type"] for r in rows] == ["noop"]
    (row,) = rows
    assert list(row) == STATS_KEYS
    assert (row["waiting"], row["in_flight"], row["enqueued"]) == (3, 0, 3)
    assert row["oldest_in_flight_s"] is None
    assert row["consumers"] == {}
    assert json.loads(ok("stats", "noop", "--json", env=env)) == rows


def test_stats_show_a_cancelled_job(env: dict[str, str]) -> None:
    """A waiting job cancelled counts 1 in stats' ``cancelled``, in --json and in the table;
    cancelling it again counts nothing more."""
    first, _kept = ok("enqueue", "noop", "--count", "2", env=env).split()
    assert ok("cancel", "noop", first, env=env).strip() == f"cancelled {first}"
    ok("cancel", "noop", first, env=env)
    (row,) = json.loads(ok("stats", "noop", "--json", env=env))
    assert (row["cancelled"], row["waiting"], row["enqueued"]) == (1, 1, 2)
    header, line = ok("stats", "noop", env=env).splitlines()
    cells = dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", line), strict=True))
    assert (cells["cancelled"], cells["waiting"], cells["processed"]) == ("1", "1", "0")


def test_enqueue_bad_args_enqueue_nothing(env: dict[str, str]) -> None:
    """Args that do not fit the type: exit 2 naming the field, and nothing is enqueued."""
    result = invoke("enqueue", "noop", "--args", '{"sleep": "x"}', env=env)
    assert result.exit_code == 2
    assert "args.sleep" in result.stderr
    assert json.loads(ok("stats", "--json", env=env)) == []


def test_pending_json_schema(env: dict[str, str], redis_url: str, prefix: str) -> None:
    """pending --json: one object per delivered, unacked job, with the documented keys."""
    (job_id,) = ok("enqueue", "noop", env=env).split()

    async def deliver() -> None:
        backend = RedisBackend(redis_url, prefix=prefix)
        try:
            await backend.ensure_groups(["noop"])
            assert len(await backend.read(["noop"], "unit-consumer", 1, 100)) == 1
        finally:
            await backend.aclose()

    asyncio.run(deliver())
    (row,) = json.loads(ok("pending", "noop", "--json", env=env))
    assert list(row) == PENDING_KEYS
    assert (row["job_id"], row["consumer"], row["deliveries"]) == (job_id, "unit-consumer", 1)
    assert row["idle_s"] >= 0
    assert ok("pending", "noop", env=env).splitlines()[0] == "1 in flight; unit-consumer: 1"
    (stats,) = json.loads(ok("stats", "--json", env=env))
    assert stats["consumers"]["unit-consumer"]["in_flight"] == 1


def test_dead_list_and_show_json_schema(env: dict[str, str], redis_url: str, prefix: str) -> None:
    """dead list/show --json: the documented keys; show adds the job (user masked)."""

    async def dead_letter_one() -> str:
        backend = RedisBackend(redis_url, prefix=prefix)
        try:
            job = Job(type="noop", args={"fail": True}, account_id=7)
            job_id = await Queue(backend, registry=registry).enqueue(job)
            worker = Worker(
                backend,
                registry,
                ["noop"],
                max_deliveries=1,
                claim_after=1.0,
                heartbeat=0.2,
                retry_base=0.01,
                block=0.02,
            )
            async with asyncio.timeout(20):
                await worker.run(stop_when_empty=True)
            return job_id
        finally:
            await backend.aclose()

    job_id = asyncio.run(dead_letter_one())
    (row,) = json.loads(ok("dead", "list", "noop", "--json", env=env))
    assert list(row) == DEAD_KEYS
    assert (row["job_id"], row["deliveries"]) == (job_id, 1)
    assert "noop asked to fail" in row["error"]
    shown = json.loads(ok("dead", "show", "noop", job_id, "--json", env=env))
    assert list(shown) == [*DEAD_KEYS, "job"]
    assert list(shown["job"]) == JOB_KEYS
    assert shown["job"]["type"] == "noop"
    assert shown["job"]["account_id"] == 7
    assert shown["job"]["args"] == {"sleep": 0.0, "fail": True}


def test_workers_json_schema(env: dict[str, str], redis_url: str, prefix: str) -> None:
    """workers --json: live heartbeat records with the documented keys, and the pruned list."""

    async def beat() -> None:
        backend = RedisBackend(redis_url, prefix=prefix)
        try:
            info = {"host": "h1", "pid": "42", "types": "noop,launch", "concurrency": "8"}
            info |= {"in_flight": "1", "processed": "5", "heartbeat_at": "0"}
            await backend.heartbeat("h1-42-abcd", info, ttl_s=30)
        finally:
            await backend.aclose()

    asyncio.run(beat())
    out = json.loads(ok("workers", "--json", env=env))
    assert list(out) == ["workers", "pruned"]
    (w,) = out["workers"]
    assert list(w) == WORKER_KEYS
    assert (w["consumer"], w["host"], w["pid"], w["types"]) == (
        "h1-42-abcd",
        "h1",
        42,
        ["noop", "launch"],
    )
    assert (w["concurrency"], w["in_flight"], w["processed"]) == (8, 1, 5)
    assert out["pruned"] == []
