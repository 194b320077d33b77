"""Long jobs under aggressive recovery, errors at the edges, and what never reaches the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import itjobs
import pytest
import redis
from worker_procs import Workers, wait_until

from streamq import Job, Principal, Queue, RedisBackend, SyncQueue

AGGRESSIVE = ("-c", "4", "--claim-after", "500ms", "--heartbeat", "100ms")


def test_long_job_is_never_run_twice_under_aggressive_recovery(
    workers: Workers, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """A job running 10x claim_after keeps its lease while two other workers try to recover
    every 125 ms: it runs exactly once."""
    queue = SyncQueue(
        lambda: Queue(RedisBackend(redis_url, prefix=prefix), registry=itjobs.registry)
    )
    try:
        (job_id,) = queue.enqueue_many([Job(type="sleepy", args={"sleep": 5.0})])
        workers.start(*AGGRESSIVE)
        wait_until(lambda: workers.counts("started"), 20, "the long job started")
        workers.start(*AGGRESSIVE)
        workers.start(*AGGRESSIVE)
        wait_until(lambda: workers.counts("done"), 30, "the long job done")
        assert workers.counts("started") == {job_id: 1}
        assert workers.counts("done") == {job_id: 1}
        report = Path(os.environ.get("STREAMQ_FAULT_REPORT", tmp_path / "faults.jsonl"))
        with report.open("a") as fh:
            figures = {"test": "long job 10x claim_after", "jobs": 1, "lost": 0, "duplicates": 0}
            fh.write(json.dumps(figures) + "\n")
    finally:
        queue.close()


@pytest.fixture
def wrong_password_url(redis_url: str) -> str:
    """A URL naming a real user of the server with the wrong password."""
    admin = redis.Redis.from_url(redis_url)
    user = f"u{uuid.uuid4().hex[:8]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
    admin.close()
    return redis_url.replace("redis://", f"redis://{user}:wrong-password@")


@pytest.mark.parametrize(
    ("url", "expect"),
    [
        ("redis//missing-colon", "invalid Redis URL"),
        ("http://127.0.0.1:6379/0", "invalid Redis URL"),
        ("redis://u:pw-unreachable@127.0.0.1:9/0", "cannot reach Redis at redis://u:***@"),
        (
            "redis://u:pw-unreachable@127.0.0.1:9/?cluster=true",
            "cannot reach the Redis cluster at redis://u:***@",
        ),
        ("redis://127.0.0.1:9/?cluster=maybe", "invalid cluster='maybe'"),
        ("WRONG_PASSWORD", "refused the credentials"),
    ],
)
def test_connection_problems_are_one_line(url: str, expect: str, wrong_password_url: str) -> None:
    """Malformed URL, unreachable server, wrong password: one line, exit 1, no secret shown."""
    url = wrong_password_url if url == "WRONG_PASSWORD" else url
    env = os.environ | {"STREAMQ_REDIS_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "streamq", "stats", "noop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("streamq: error:")
    assert expect in done.stderr
    for secret in ("wrong-password", "pw-unreachable"):
        assert secret not in done.stderr + done.stdout


def test_identity_never_in_real_worker_output(
    workers: Workers, redis_url: str, prefix: str
) -> None:
    """A failing job's identity: the worker's JSON logs and `dead show` never show the user."""
    secret_user = "very-secret-user-42"
    queue = SyncQueue(
        lambda: Queue(RedisBackend(redis_url, prefix=prefix), registry=itjobs.registry)
    )
    try:
        identity = Principal(account_number="acct-1", org_id="org-1", user=secret_user)
        (job_id,) = queue.enqueue_many([Job(type="flaky", args={}, identity=identity)])
        workers.redis.set(f"{prefix}:flaky:fail", "1")
        proc = workers.start("--max-deliveries", "2", "--retry-base", "50ms", types=("flaky",))
        wait_until(lambda: queue.stats(["flaky"])[0].dead == 1, 30, "the job dead")
        log = workers.log_of(proc)
        lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
        about_job = [x for x in lines if x.get("job_id") == job_id]
        assert about_job, log
        assert all(x["org_id"] == "org-1" for x in about_job)
        shown = subprocess.run(
            [sys.executable, "-m", "streamq", "dead", "show", "flaky", job_id, "--json"],
            env=os.environ | {"STREAMQ_REDIS_URL": redis_url, "STREAMQ_PREFIX": prefix},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["job"]["user"] == "ve***"
        assert secret_user not in log
        assert secret_user not in shown.stdout + shown.stderr
    finally:
        queue.close()
