"""``streamq job TYPE ID``, run as operators run it: a job's state as it goes (scheduled,
running, retrying, dead), unknown ids, exit codes, and the identity never printed whole."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_helpers import Cli, error_lines, wait_for

from streamq import Job, Principal, SyncQueue


@pytest.fixture
def queue(redis_url: str, prefix: str) -> Iterator[SyncQueue]:
    """The API on the same server and prefix."""
    q = SyncQueue.from_url(redis_url, prefix=prefix)
    yield q
    q.close()


def text_fields(out: str) -> dict[str, str]:
    """``label  value`` lines as a mapping (labels may hold one space: ``job id``)."""
    rows = {}
    for line in out.splitlines():
        label, _, value = line.partition("  ")
        rows[label.strip()] = value.strip()
    return rows


def test_a_scheduled_job_then_running_with_its_consumer(cli: Cli, queue: SyncQueue) -> None:
    """A delayed job is ``scheduled`` (due in about its delay); once a worker runs it,
    ``running`` under that worker's consumer, in the text and in ``--json``."""
    (job_id,) = cli.enqueue("noop", '{"sleep": 20}', "--delay", "3s")
    doc = cli.json("job", "noop", job_id)
    assert (doc["state"], doc["job_id"], doc["type"]) == ("scheduled", job_id, "noop")
    assert 0 < doc["due_in_s"] <= 3
    assert doc["due_at"].endswith("Z")
    assert doc["job"]["args"]["sleep"] == 20
    shown = text_fields(cli.ok("job", "noop", job_id))
    assert (shown["state"], shown["job id"]) == ("scheduled", job_id)
    assert "consumer" not in shown

    proc = cli.consume("noop", "-c", "1")
    consumer = cli.consumer_of(proc)
    doc = wait_for(
        lambda: (d := cli.json("job", "noop", job_id))["state"] == "running" and d,
        "the job running",
    )
    assert (doc["consumer"], doc["deliveries"]) == (consumer, 1)
    assert doc["idle_s"] >= 0
    assert (doc["step"], doc["step_name"]) == (0, None)  # noop has one step
    shown = text_fields(cli.ok("job", "noop", job_id))
    assert (shown["state"], shown["consumer"], shown["deliveries"]) == ("running", consumer, "1")


def test_a_failing_job_is_retrying_then_dead(cli: Cli) -> None:
    """A job that fails is ``retrying`` with its last error, then ``dead`` with the reason."""
    (job_id,) = cli.enqueue("noop", '{"fail": true}')
    cli.consume("noop", "--max-deliveries", "2", "--retry-base", "2s")
    retrying = wait_for(
        lambda: (d := cli.json("job", "noop", job_id))["state"] == "retrying" and d,
        "the job waiting for its retry",
    )
    assert retrying["deliveries"] == 1
    assert "noop asked to fail" in retrying["last_error"]
    dead = wait_for(
        lambda: (d := cli.json("job", "noop", job_id))["state"] == "dead" and d,
        "the job dead",
        timeout=20,
    )
    assert dead["reason"] == "failed 2 times (max_deliveries 2)"
    assert dead["deliveries"] == 2
    assert "noop asked to fail" in dead["last_error"]
    shown = text_fields(cli.ok("job", "noop", job_id))
    assert shown["state"] == "dead"
    assert shown["reason"] == dead["reason"]


def test_an_unknown_id_exits_0_with_state_unknown(cli: Cli) -> None:
    """An id never seen: state unknown, exit 0, on stdout; nothing on stderr."""
    done = cli.run("job", "noop", "no-such-job", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert '"state": "unknown"' in done.stdout
    text = cli.ok("job", "noop", "no-such-job")
    assert text.splitlines()[0].split() == ["state", "unknown"]


def test_the_identity_is_never_printed_whole(cli: Cli, queue: SyncQueue) -> None:
    """The identity's user shows masked in the text and in --json."""
    who = Principal(account_number="5678", org_id="1234", user="alice.secret")
    job_id = queue.enqueue(Job(type="noop", args={}, account_id=7, identity=who), delay=60)
    for args in (("job", "noop", job_id), ("job", "noop", job_id, "--json")):
        out = cli.ok(*args)
        assert "alice.secret" not in out
        assert "al***" in out
        assert "1234" in out


def test_usage_and_server_errors_are_one_line(cli: Cli) -> None:
    """No id: a usage error (exit 2); an unreachable server: one line, exit 1."""
    usage = cli.run("job", "noop")
    assert usage.returncode == 2
    assert len(error_lines(usage.stderr)) == 1
    down = cli.run("job", "noop", "x", "--url", "redis://127.0.0.1:1/0")
    assert down.returncode == 1
    (line,) = error_lines(down.stderr)
    assert line.startswith("streamq: error:")
