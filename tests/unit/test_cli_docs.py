"""The CLI docs match the code: docs/cli.md as generated, docs/cli-json.md as emitted."""

from __future__ import annotations

import asyncio
import difflib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from streamq import (
    ConsumerStats,
    DeadEntry,
    Job,
    JobState,
    PendingJob,
    Principal,
    Queue,
    Registry,
    TypeStats,
    _codec,
)
from streamq._cli import app
from streamq._inspect import ScheduledJob
from streamq._views import (
    dead_json,
    keys_json,
    pending_json,
    schedule_json,
    scheduled_json,
    stats_json,
    worker_json,
)
from streamq._views_job import job_state_json
from streamq.backends._flow_base import KeyLoad
from streamq.backends.redis import RedisBackend

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLI_MD = DOCS / "cli.md"
CLI_JSON_MD = DOCS / "cli-json.md"

#: The JSON type names the tables use, as Python types (``list of strings`` is a list).
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "list": (list,),
    "null": (type(None),),
}


def field_tables(text: str) -> dict[str, dict[str, str]]:
    """Each ``| field | type | meaning |`` table of a page, by its heading: field -> type."""
    tables: dict[str, dict[str, str]] = {}
    heading = ""
    rows: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            heading, rows = line.lstrip("#").strip().replace("`", ""), None
        elif not line.startswith("|"):
            rows = None
        else:
            cells = [c.strip() for c in line.strip().strip("|").split("|", 2)]
            if cells[:2] == ["field", "type"]:
                assert heading not in tables, f"two field tables under {heading!r}"
                rows = tables[heading] = {}
            elif rows is not None and set(cells[0]) - set("-: "):
                rows[cells[0].strip("`")] = cells[1]
    return tables


def json_types(cell: str) -> tuple[type, ...]:
    """The Python types a documented type (``string or null``, ``list of objects``) allows."""
    allowed: tuple[type, ...] = ()
    for alternative in cell.split(" or "):
        word = alternative.split()[0]
        assert word in JSON_TYPES, f"unknown JSON type {cell!r}"
        allowed += JSON_TYPES[word]
    return allowed


def assert_matches_doc(heading: str, emitted: list[dict[str, Any]]) -> None:
    """Every object in ``emitted`` has exactly the fields documented under ``heading``, typed so."""
    tables = field_tables(CLI_JSON_MD.read_text(encoding="utf-8"))
    assert heading in tables, f"docs/cli-json.md has no field table under a heading {heading!r}"
    documented = tables[heading]
    assert emitted, f"no sample object for {heading!r}"
    for obj in emitted:
        assert list(obj) == list(documented), (
            f"docs/cli-json.md, {heading!r}: documents {list(documented)}, "
            f"the code emits {list(obj)}"
        )
        for key, value in obj.items():
            allowed = json_types(documented[key])
            # bool is an int in Python, not in JSON: true is no integer or number.
            matches = isinstance(value, allowed) and (bool in allowed or type(value) is not bool)
            assert matches, (
                f"docs/cli-json.md, {heading!r}: {key} is documented as {documented[key]!r}, "
                f"the code emits {value!r}"
            )


def _stats() -> list[dict[str, Any]]:
    busy = TypeStats(
        type="launch",
        waiting=3,
        in_flight=2,
        oldest_in_flight_s=12.5,
        dead=1,
        enqueued=9,
        processed=3,
        failed=2,
        retried=1,
        dead_lettered=1,
        consumers={"host-1-ab12": ConsumerStats(2, 0.25)},
        paused=True,
        paused_since=1700000000.5,
        pause_reason="deploy of v2",
    )
    idle = TypeStats("noop", 0, 0, None, 0, 0, 0, 0, 0, 0, {})
    return [stats_json(busy), stats_json(idle)]


def _pending() -> list[dict[str, Any]]:
    return [
        pending_json(PendingJob("job-1", "1700000000000-0", "host-1-ab12", 4.2, 1)),
        pending_json(PendingJob(None, "1700000000000-1", "host-1-ab12", 0.0, 3)),
    ]


def _dead(*, full: bool) -> list[dict[str, Any]]:
    job = Job(
        type="launch",
        args={"reservation_id": 42},
        account_id=1,
        identity=Principal(account_number="5678", org_id="1234", user="alice"),
        request_id="req-1",
    )
    readable = DeadEntry(
        dead_id="1700000000500-0",
        job_id="job-1",
        reason="failed 5 times (max_deliveries 5)",
        error="RuntimeError: boom",
        deliveries=5,
        entry_id="1700000000000-0",
        dead_at=1700000000.5,
        fields=_codec.encode(job, "job-1"),
    )
    poison = DeadEntry(
        dead_id="1700000000600-0",
        job_id=None,
        reason="poison: missing or undecodable job id field",
        error="",
        deliveries=1,
        entry_id="1700000000100-0",
        dead_at=1700000000.6,
        fields={b"v": b"1", b"job": b"{"},
    )
    return [dead_json(readable, full=full), dead_json(poison, full=full)]


def _workers() -> list[dict[str, Any]]:
    beat = {
        "id": "host-1-ab12",
        "host": "host",
        "pid": "4321",
        "types": "launch,noop",
        "concurrency": "32",
        "type_concurrency": "launch=8",
        "in_flight": "2",
        "processed": "17",
        "started_at": "1700000000.000",
        "heartbeat_at": "1700000009.000",
        "paused": "launch",
        "supervisor": "4300:2",
    }
    return [worker_json(beat, now=1700000010.0), worker_json({"id": "bare"}, now=1700000010.0)]


CHRISTMAS_EVE = datetime(2026, 12, 24, 18, tzinfo=UTC)


def _schedules() -> list[dict[str, Any]]:
    registry = Registry()
    every = registry.every(60.0, "noop", args={"n": 1})
    cron = registry.cron("0 9 * * MON-FRI", "noop", tz="Europe/Riga")
    now = 1_700_000_000_000
    return [schedule_json(every, now - 1_000, now), schedule_json(cron, None, now)]


def _job_states() -> list[dict[str, Any]]:
    job = Job(type="launch", args={"reservation_id": 42}, account_id=1, id="job-1")
    fields = _codec.encode(job, "job-1")
    at = CHRISTMAS_EVE
    states = [
        JobState("scheduled", "launch", "job-1", job, at, None, 0, at, 2.5, fields=fields),
        JobState("waiting", "launch", "job-1", job, at, "1700000000000-0@2", 0, fields=fields),
        JobState(
            "running", "launch", "job-1", job, at, "1700000000000-0", 2,
            consumer="host-1-ab12", idle_s=0.25, fields=fields,
        ),
        JobState(
            "retrying", "launch", "job-1", job, at, None, 1, at, -0.1,
            last_error="RuntimeError: boom", fields=fields,
        ),
        JobState(
            "dead", "launch", "job-1", job, at, "1700000000000-0", 5, last_error="",
            reason="poison: x", dead_id="1700000000500-0", dead_at=at, fields={b"v": b"1"},
        ),
        JobState("unknown", "launch", "job-2", settled=False),
    ]  # fmt: skip
    return [job_state_json(s) for s in states]


#: Each table of docs/cli-json.md that sample objects check, with those objects.
SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "stats --json": _stats,
    "stats --json: consumers values": lambda: [
        c for s in _stats() for c in s["consumers"].values()
    ],
    "stats --keys TYPE --json": lambda: [
        keys_json(KeyLoad("7", 2, 8)),
        keys_json(KeyLoad("", 0, 1)),
    ],
    "pending --json": _pending,
    "scheduled --json": lambda: [
        scheduled_json(ScheduledJob("job-1", CHRISTMAS_EVE, 2.5, "delay", 0)),
        scheduled_json(ScheduledJob(None, CHRISTMAS_EVE, -0.1, "delay", 0)),
    ],
    "dead list --json": lambda: _dead(full=False),
    "dead show --json": lambda: _dead(full=True),
    "dead show --json: job": lambda: [_dead(full=True)[0]["job"]],
    "dead show --json: job of an undecodable job": lambda: [_dead(full=True)[1]["job"]],
    "workers --json: workers items": _workers,
    "schedules --json": _schedules,
    "job --json": _job_states,
}

#: The tables that a run of the real commands checks (test_wrapping_objects_match_the_doc).
RUN = ["recover --json", "workers --json", "workers --json: pruned items"]


def test_cli_reference_is_up_to_date(tmp_path: Path) -> None:
    """docs/cli.md is exactly what `make docs` generates from the typer app now."""
    out = tmp_path / "cli.md"
    # The command of `make docs`, run with this interpreter.
    command = ["-m", "typer", "streamq._cli", "utils", "docs", "--name", "streamq"]
    done = subprocess.run(
        [sys.executable, *command, "--output", str(out)],
        cwd=DOCS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"typer utils docs exited {done.returncode}:\n{done.stderr}"
    fresh = out.read_text(encoding="utf-8")
    current = CLI_MD.read_text(encoding="utf-8")
    diff = difflib.unified_diff(
        current.splitlines(), fresh.splitlines(), "docs/cli.md", "generated", lineterm="", n=1
    )
    shown = "\n".join(list(diff)[:40])
    assert fresh == current, f"docs/cli.md is out of date: run `make docs`\n{shown}"


@pytest.mark.parametrize("heading", list(SAMPLES))
def test_json_schema_matches_the_code(heading: str) -> None:
    """The fields (and their types) documented under a heading are those the code emits."""
    assert_matches_doc(heading, SAMPLES[heading]())


def _json_commands(group: Any, path: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _json_commands(command, f"{path}{name} ")
        elif any("--json" in p.opts for p in command.params):
            yield f"{path}{name}"


def test_every_json_command_and_table_is_checked() -> None:
    """Each command with --json has a documented schema, and each field table is tested."""
    tables = field_tables(CLI_JSON_MD.read_text(encoding="utf-8"))
    commands = sorted(_json_commands(typer.main.get_command(app)))
    assert commands, "found no command with --json"
    undocumented = [c for c in commands if f"{c} --json" not in tables]
    assert not undocumented, f"docs/cli-json.md has no schema for {undocumented}"
    unchecked = sorted(set(tables) - set(SAMPLES) - set(RUN))
    assert not unchecked, f"tables in docs/cli-json.md that no test checks: {unchecked}"


@pytest.fixture
def one_of_each(redis_url: str, prefix: str) -> str:
    """A type with a job held by a live worker, and a consumer with neither worker nor jobs."""

    async def populate() -> None:
        async with Queue(RedisBackend(redis_url, prefix=prefix)) as queue:
            backend = queue.backend
            await backend.ensure_groups(["noop"])
            await queue.enqueue(Job(type="noop", args={}))
            assert await backend.read(["noop"], "holder", 1, 1)
            assert not await backend.read(["noop"], "ghost", 1, 1)
            info = {"host": "host", "pid": "1", "types": "noop", "heartbeat_at": "0"}
            await backend.heartbeat("holder", info, ttl_s=60)

    asyncio.run(populate())
    return "noop"


def run_json(*args: str) -> Any:
    """Run a command of the app in this process and parse what it printed on stdout."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"streamq {' '.join(args)}: {result.output}"
    return json.loads(result.stdout)


def test_wrapping_objects_match_the_doc(redis_url: str, prefix: str, one_of_each: str) -> None:
    """recover --json and workers --json print the objects documented, from a real server."""
    where = ["--url", redis_url, "--prefix", prefix]
    recovered = run_json("recover", one_of_each, "--min-idle", "0", "--dry-run", "--json", *where)
    assert_matches_doc("recover --json", [recovered])
    assert_matches_doc("pending --json", recovered["jobs"])
    workers = run_json("workers", "--prune", "--json", *where)
    assert_matches_doc("workers --json", [workers])
    assert_matches_doc("workers --json: workers items", workers["workers"])
    assert workers["pruned"] == [{"type": one_of_each, "consumer": "ghost"}]
    assert_matches_doc("workers --json: pruned items", workers["pruned"])
