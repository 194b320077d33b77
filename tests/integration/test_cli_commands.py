"""The command line as operators run it: ``python -m streamq`` subprocesses on a real server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_helpers import Cli, error_lines, wait_for

from streamq import SyncQueue
from streamq._server import PrivateServer, _free_port


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """The API on the same server and prefix, to poll cheaply while a command's effect lands."""
    q = SyncQueue.from_url(redis_url, prefix=prefix)
    yield q
    q.close()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    return _free_port()


def in_flight(queue: SyncQueue, type: str) -> int:
    """Entries of ``type`` delivered and not yet acked."""
    (s,) = queue.stats([type])
    return int(s.in_flight)


# consume ------------------------------------------------------------------------------------


def test_consume_drains_on_sigterm(cli: Cli, queue: SyncQueue, redis_url: str) -> None:
    """SIGTERM: running jobs finish and are acked, unread ones stay waiting, exit 0."""
    ids = cli.enqueue("noop", '{"sleep": 2}', "--count", "4")
    assert len(ids) == 4
    proc = cli.consume("noop", "-c", "2", "--shutdown-grace", "20s")
    wait_for(lambda: in_flight(queue, "noop") == 2, "2 jobs running")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)

    first = cli.log_of(proc).splitlines()[0]
    pattern = (
        rf"streamq: consuming noop from {re.escape(redis_url)} \(concurrency 2, "
        r"done jobs kept 24h, max 100000 per type, consumer .*\)"
    )
    assert re.fullmatch(pattern, first), first
    assert f"-{proc.pid}-" in cli.consumer_of(proc)
    assert "Traceback" not in cli.log_of(proc)
    s = cli.stats("noop")
    assert s["in_flight"] == 0
    assert s["failed"] == 0
    assert s["processed"] >= 2
    assert s["processed"] + s["waiting"] == 4, "a started job was neither acked nor left waiting"
    assert s["consumers"] == {}, "a clean exit leaves the group"


@pytest.mark.parametrize("command", [("consume", "noop"), ("stats",)])
def test_unreachable_server_error_redacts_password(cli: Cli, command: tuple[str, ...]) -> None:
    """Server unreachable: exit 1, one error line naming the URL with the password as ***."""
    url = f"redis://user:s3cret@127.0.0.1:{closed_port()}/0"
    done = cli.run(*command, env=cli.env | {"STREAMQ_REDIS_URL": url})
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    errors = [line for line in lines if line.startswith("streamq: error:")]
    assert len(errors) == 1, done.stderr
    assert "redis://user:***@127.0.0.1" in errors[0]
    # consume reaches the server before its start-up line: the error is the only line.
    assert lines == errors
    assert "s3cret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_consume_with_a_short_claim_after_starts(cli: Cli, queue: SyncQueue) -> None:
    """consume --claim-after 2s alone starts (its heartbeat default follows) and runs jobs."""
    proc = cli.consume("noop", "--claim-after", "2s")
    assert cli.startup_line(proc).startswith("streamq: consuming noop from "), cli.log_of(proc)
    cli.enqueue("noop")
    wait_for(lambda: queue.stats(["noop"])[0].processed == 1, "the job done")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, cli.log_of(proc)


@pytest.mark.parametrize(
    "url",
    ["redis://default:{pw}@127.0.0.1:{port}/0", "redis://127.0.0.1:{port}/0?password={pw}"],
)
def test_consuming_line_never_shows_the_password(
    private_server: PrivateServer, prefix: str, embedded_state: Path, tmp_path: Path, url: str
) -> None:
    """The "consuming ... from" line names the server with its password as ***, in any place."""
    password = "s3cret-pw"
    with redis.Redis.from_url(private_server.url) as client:
        client.config_set("requirepass", password)
    url = url.format(pw=password, port=private_server.port)
    cli = Cli(url, prefix, embedded_state, tmp_path)
    try:
        proc = cli.consume("noop")
        line = cli.startup_line(proc)
        assert line.startswith("streamq: consuming noop from redis://"), cli.log_of(proc)
        assert "***" in line
        assert f"127.0.0.1:{private_server.port}/0" in line
        assert password not in cli.log_of(proc)
    finally:
        cli.stop_all()


# pending and recover ------------------------------------------------------------------------


def test_pending_shows_running_jobs(cli: Cli, queue: SyncQueue) -> None:
    """pending lists jobs really running: consumer, idle time, deliveries; header per consumer."""
    ids = cli.enqueue("noop", '{"sleep": 20}', "--count", "3")
    proc = cli.consume("noop", "-c", "2")
    consumer = cli.consumer_of(proc)
    wait_for(lambda: in_flight(queue, "noop") == 2, "2 jobs running")

    out = cli.ok("pending", "noop").splitlines()
    assert out[0] == f"2 in flight; {consumer}: 2"
    assert out[1].split() == ["job", "id", "entry", "id", "consumer", "idle", "deliveries"]
    assert len(out) == 4
    for line in out[2:]:
        job_id, entry_id, who, idle, deliveries = line.split()
        assert job_id in ids
        assert re.fullmatch(r"\d+-\d+", entry_id)
        assert who == consumer
        assert re.fullmatch(r"\d+ms|\d+\.\ds", idle), idle
        assert deliveries == "1"

    rows = cli.json("pending", "noop")
    assert len(rows) == 2
    assert {r["job_id"] for r in rows} <= set(ids)
    assert {r["consumer"] for r in rows} == {consumer}
    assert all(r["deliveries"] == 1 and r["idle_s"] >= 0 for r in rows)
    assert [r["idle_s"] for r in rows] == sorted((r["idle_s"] for r in rows), reverse=True)
    assert cli.ok("pending", "noop", "--consumer", "someone-else").strip() == "0 in flight"
    assert cli.json("pending", "noop", "--min-idle", "1h") == []


def test_recover_hands_a_stuck_job_to_another_worker(cli: Cli, queue: SyncQueue) -> None:
    """recover --min-idle: a dead worker's job runs on another worker now; --dry-run moves none."""
    # A long claim_after keeps the workers' own recovery pass out of the way.
    slow = ("--claim-after", "10m")
    (job_id,) = cli.enqueue("noop", '{"sleep": 2}')
    a = cli.consume("noop", "-c", "1", *slow)
    consumer_a = cli.consumer_of(a)
    (held,) = wait_for(lambda: queue.pending("noop"), "the job pending under worker A")
    assert (held.job_id, held.consumer) == (job_id, consumer_a)
    cli.kill(a)

    dry = cli.json("recover", "noop", "--min-idle", "0s", "--dry-run")
    assert dry["dry_run"] is True
    assert [(j["job_id"], j["consumer"]) for j in dry["jobs"]] == [(job_id, consumer_a)]
    assert cli.ok("recover", "noop", "--min-idle", "1h").startswith("handed back 0 job(s)")
    (still,) = queue.pending("noop")
    assert (still.entry_id, still.consumer) == (held.entry_id, consumer_a), "dry run moved it"

    out = cli.ok("recover", "noop", "--min-idle", "0s")
    assert out.splitlines()[0] == "handed back 1 job(s) of noop"
    assert job_id in out
    s = cli.stats("noop")
    assert (s["waiting"], s["in_flight"]) == (1, 0)

    cli.consume("noop", "-c", "1", *slow)
    wait_for(lambda: queue.stats(["noop"])[0].processed == 1, "the job done by worker B")
    s = cli.stats("noop")
    assert (s["processed"], s["in_flight"], s["waiting"], s["dead"]) == (1, 0, 0, 0)


# dead letters -------------------------------------------------------------------------------


def test_dead_retry_brings_a_dead_job_back_to_success(
    cli: Cli, queue: SyncQueue, redis_url: str, prefix: str
) -> None:
    """dead list/show/retry/purge: a retried dead job runs again under its id and succeeds."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{prefix}:flaky:fail", "1")
        fixed, purged = cli.enqueue("flaky", "{}", "--count", "2", "--handlers", "itjobs")
        handlers = ("--handlers", "itjobs", "--retry-base", "100ms")
        cli.consume("flaky", "--max-deliveries", "1", *handlers)
        wait_for(lambda: queue.stats(["flaky"])[0].dead == 2, "both jobs dead-lettered")

        listed = cli.ok("dead", "list", "flaky").splitlines()
        assert listed[0] == "2 dead"
        assert {line.split()[0] for line in listed[2:]} == {fixed, purged}
        rows = cli.json("dead", "list", "flaky")
        assert {r["job_id"] for r in rows} == {fixed, purged}

        shown = cli.ok("dead", "show", "flaky", fixed)
        # "key" padded to 11 columns, a space, the value (which may be empty).
        fields = {line[:11].strip(): line[12:] for line in shown.splitlines()}
        assert fields["job_id"] == fixed
        assert fields["deliveries"] == "1"
        assert fields["reason"].strip()
        assert "flaky is told to fail" in fields["error"]
        detail = cli.json("dead", "show", "flaky", fixed)
        assert (detail["job_id"], detail["deliveries"]) == (fixed, 1)
        assert detail["job"]["type"] == "flaky"

        refused = cli.run("dead", "purge", "flaky")
        assert refused.returncode == 2
        assert queue.stats(["flaky"])[0].dead == 2, "purge without --yes deleted something"

        client.delete(f"{prefix}:flaky:fail")
        out = cli.ok("dead", "retry", "flaky", fixed).splitlines()
        assert out == ["retried 1 job(s) of flaky", fixed]
        wait_for(lambda: client.hgetall(f"{prefix}:flaky:done"), "the retried job done")
        assert client.hgetall(f"{prefix}:flaky:done") == {fixed.encode(): b"1"}

        assert cli.ok("dead", "purge", "flaky", "--yes").strip() == "purged 1 dead job(s) of flaky"
        wait_for(lambda: in_flight(queue, "flaky") == 0, "the retried job acked")
        s = cli.stats("flaky")
        assert (s["processed"], s["dead"], s["in_flight"], s["waiting"]) == (1, 0, 0, 0)
    finally:
        client.close()


# workers ------------------------------------------------------------------------------------


def test_workers_lists_live_ones_and_prunes_dead_consumers(cli: Cli, queue: SyncQueue) -> None:
    """workers shows a live consumer's host, pid, types; --prune drops it once it died idle."""
    # TTL of the worker record: 3 heartbeats, 0.9 s.
    proc = cli.consume("noop", "-c", "3", "--heartbeat", "300ms", "--claim-after", "1s")
    consumer = cli.consumer_of(proc)
    cli.enqueue("noop")
    wait_for(lambda: queue.stats(["noop"])[0].processed == 1, "a job done")

    # Polled: on a loaded machine one heartbeat may come late and the record lapse a moment.
    (w,) = wait_for(lambda: cli.json("workers")["workers"], "the worker listed")
    assert (w["consumer"], w["host"], w["pid"]) == (consumer, socket.gethostname(), proc.pid)
    assert (w["types"], w["concurrency"]) == (["noop"], 3)

    def listed() -> list[str] | None:
        lines = cli.ok("workers").splitlines()
        return lines if lines[0] == "1 live worker(s)" else None

    table = wait_for(listed, "the worker in the table")
    assert table[2].split()[:5] == [consumer, socket.gethostname(), str(proc.pid), "noop", "3"]

    cli.kill(proc)
    wait_for(lambda: not queue.workers(), "the heartbeat record expired")
    assert consumer in cli.stats("noop")["consumers"], "a SIGKILL leaves the consumer behind"
    out = cli.ok("workers", "--prune").splitlines()
    assert out[0] == "0 live worker(s)"
    assert out[1:] == ["pruned 1 consumer(s)", f"  noop: {consumer}"]
    assert cli.stats("noop")["consumers"] == {}


# pause and resume ---------------------------------------------------------------------------


def log_events(text: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``event`` in a ``consume`` process's stderr."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_pause_holds_a_types_jobs_until_resume(cli: Cli, queue: SyncQueue) -> None:
    """pause: one line, a worker started paused takes none of the jobs (waiting; stats and
    workers show the pause and its reason; it logs it once); resume: one line, and they run."""
    done = cli.run("pause", "noop", "--reason", "deploy of v2")
    assert (done.returncode, done.stdout) == (0, "paused noop\n"), done.stderr
    assert error_lines(done.stderr) == [
        "streamq: note: no job of noop was enqueued here yet (paused anyway)"
    ]
    assert cli.ok("pause", "noop") == "noop was paused already\n"
    proc = cli.consume("noop", "-c", "2", "--heartbeat", "300ms", "--claim-after", "1s")
    ids = cli.enqueue("noop", "{}", "--count", "3")
    (w,) = wait_for(lambda: cli.json("workers")["workers"], "the worker listed")
    assert w["paused"] == ["noop"]
    wait_for(lambda: log_events(cli.log_of(proc), "streamq.worker.type_paused"), "paused logged")

    s = cli.stats("noop")
    assert (s["waiting"], s["in_flight"], s["processed"]) == (3, 0, 0)
    assert (s["paused"], s["pause_reason"]) == (True, "deploy of v2")
    assert isinstance(s["paused_since"], float)
    head, row = cli.ok("stats", "noop").splitlines()
    assert head.split()[-1] == "paused"
    assert row.split()[-2] == "for", row

    assert cli.ok("resume", "noop", "noop") == "resumed noop\n"
    wait_for(lambda: queue.stats(["noop"])[0].processed == 3, "the 3 jobs done")
    assert cli.ok("resume", "noop") == "noop was not paused\n"
    s = cli.stats("noop")
    assert (s["paused"], s["paused_since"], s["pause_reason"]) == (False, None, None)
    assert cli.ok("stats", "noop").splitlines()[1].split()[-1] == "-"
    wait_for(lambda: log_events(cli.log_of(proc), "streamq.worker.type_resumed"), "resumed")
    (paused,) = log_events(cli.log_of(proc), "streamq.worker.type_paused")
    assert (paused["job_type"], paused["reason"]) == ("noop", "deploy of v2")
    assert len(log_events(cli.log_of(proc), "streamq.worker.type_resumed")) == 1
    assert len(ids) == 3


# bad input ----------------------------------------------------------------------------------

BAD_INPUT = [
    pytest.param(("frobnicate",), 2, "No such command", id="unknown-command"),
    pytest.param(("pending", "noop", "--min-idle", "xx"), 2, "not a duration", id="bad-duration"),
    pytest.param(("recover", "noop", "--min-idle", "5 d"), 2, "not a duration", id="recover-dur"),
    pytest.param(("consume", "noop", "--claim-after", "soon"), 2, "soon", id="consume-duration"),
    pytest.param(("enqueue", "noop", "--count", "0"), 2, "--count", id="count-0"),
    pytest.param(("enqueue", "noop", "--args", "{bad"), 2, "not valid JSON", id="args-json"),
    pytest.param(("enqueue", "noop", "--args", "[1]"), 2, "JSON object", id="args-not-object"),
    pytest.param(("enqueue", "noop", "--args", "@/nonexistent.json"), 2, "cannot read", id="@file"),
    pytest.param(("recover", "noop"), 2, "--min-idle", id="recover-without-min-idle"),
    pytest.param(
        ("enqueue", "noop", "--args", '{"sleep": "x"}'), 2, "args.sleep", id="args-bad-field"
    ),
    pytest.param(("enqueue", "nope"), 2, "nope", id="enqueue-no-handler"),
    pytest.param(("consume", "nope"), 2, "no handler registered for nope", id="consume-nope"),
    pytest.param(("consume", "noop", "--handlers", "no_such_mod"), 2, "no_such_mod", id="mod"),
    pytest.param(("consume", "noop", "--log-format", "xml"), 2, "--log-format", id="log-format"),
    pytest.param(
        ("consume", "noop", "--heartbeat", "5s", "--claim-after", "2s"),
        2,
        "--heartbeat (5s) must be at most half of --claim-after (2s)",
        id="heartbeat-above-claim-after",
    ),
    pytest.param(("consume", "noop", "--heartbeat", "31s"), 2, "--claim-after", id="hb-default"),
    pytest.param(("dead", "retry", "noop"), 2, "--all", id="retry-nothing"),
    pytest.param(("dead", "purge", "noop"), 2, "--yes", id="purge-without-yes"),
    pytest.param(("stats", "--watch", "xx"), 2, "not a duration", id="watch-duration"),
    pytest.param(("dead", "show", "noop", "no-such-id"), 1, "no-such-id", id="dead-show-missing"),
    pytest.param(("dead", "retry", "noop", "no-such-id"), 1, "no-such-id", id="retry-missing"),
    pytest.param(("pending", "noop"), 1, "cannot reach", id="unreachable"),
    pytest.param(("pause",), 2, "Missing argument", id="pause-nothing"),
    pytest.param(("pause", "ok", "bad{name"), 2, "invalid job type name", id="pause-bad-name"),
    pytest.param(("pause", "noop", "--reason", "x" * 201), 2, "--reason", id="pause-reason"),
    pytest.param(("resume", "bad name"), 2, "invalid job type name", id="resume-bad-name"),
    pytest.param(("pause", "noop"), 1, "cannot reach", id="pause-unreachable"),
]


@pytest.mark.parametrize(("args", "code", "says"), BAD_INPUT)
def test_bad_input_is_one_line_and_an_exit_code(
    cli: Cli, queue: SyncQueue, args: tuple[str, ...], code: int, says: str
) -> None:
    """Bad input: one "streamq: error:" line on stderr, no traceback, exit 2 (usage) or 1."""
    env = cli.env
    if says == "cannot reach":
        env = env | {"STREAMQ_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    done = cli.run(*args, env=env)
    assert done.returncode == code, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("streamq: error: "), lines[0]
    assert says in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    if args[0] in ("enqueue", "pause"):
        assert queue.types() == [], f"a refused {args[0]} left something on the server"


def test_no_command_shows_the_help(cli: Cli) -> None:
    """`streamq` or a group alone prints its usage and commands (exit 2), not an error line."""
    for args, command in [((), "enqueue"), (("dead",), "retry")]:
        done = cli.run(*args)
        assert done.returncode == 2
        assert done.stderr.startswith("Usage: ")
        assert command in done.stderr
        assert "streamq: error" not in done.stderr


# the embedded server ------------------------------------------------------------------------


def test_server_start_status_stop(cli: Cli, embedded_state: Path) -> None:
    """server status/start/stop on an empty state folder; a command without a URL says so once."""
    env = {k: v for k, v in cli.env.items() if k != "STREAMQ_REDIS_URL"}
    env["STREAMQ_STATE_DIR"] = str(embedded_state)
    status = cli.run("server", "status", env=env)
    assert status.returncode == 1
    assert "not running" in status.stdout

    started = cli.run("server", "start", env=env)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url == f"unix://{embedded_state}/server.sock"

    status = cli.run("server", "status", env=env)
    assert status.returncode == 0, status.stderr
    info = dict(line.split(None, 1) for line in status.stdout.splitlines())
    assert info["url"] == url
    assert int(info["pid"]) > 0
    assert re.match(r"\d+\.\d+", info["version"])
    assert info["data"] == str(embedded_state)

    stats = cli.run("stats", "--json", env=env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout) == []
    assert error_lines(stats.stderr) == [f"streamq: using the embedded server at {url}"]

    stopped = cli.run("server", "stop", env=env)
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped")
    assert cli.run("server", "status", env=env).returncode == 1
    assert not os.path.exists(embedded_state / "server.sock")


@pytest.mark.parametrize("command", [("stats",), ("consume", "noop"), ("enqueue", "noop")])
def test_streamq_embedded_0_without_url_is_one_line_and_exit_2(
    cli: Cli, embedded_state: Path, command: tuple[str, ...]
) -> None:
    """STREAMQ_EMBEDDED=0 and no URL: one error line naming STREAMQ_REDIS_URL, exit 2, and no
    embedded server started."""
    env = {k: v for k, v in cli.env.items() if k != "STREAMQ_REDIS_URL"}
    env |= {"STREAMQ_STATE_DIR": str(embedded_state), "STREAMQ_EMBEDDED": "0"}
    done = cli.run(*command, env=env)
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert line.startswith("streamq: error: STREAMQ_REDIS_URL is not set and STREAMQ_EMBEDDED=0")
    assert "Traceback" not in done.stderr + done.stdout
    assert not os.path.exists(embedded_state / "server.sock")


def test_embedded_url_uses_the_embedded_server(cli: Cli, embedded_state: Path) -> None:
    """--url embedded: (or STREAMQ_REDIS_URL=embedded:) picks the embedded server, said once."""
    env = cli.env | {"STREAMQ_STATE_DIR": str(embedded_state), "STREAMQ_EMBEDDED": "0"}
    done = cli.run("stats", "--json", "--url", "embedded:", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    url = f"unix://{embedded_state}/server.sock"
    assert error_lines(done.stderr) == [f"streamq: using the embedded server at {url}"]
