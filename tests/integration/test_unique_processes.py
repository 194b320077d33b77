"""Fifty producer processes enqueue one unique key at the same moment: one job is created, and
every process is told its id."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

PRODUCER = """
import json, os, sys, time
from pathlib import Path
from streamq import Job, SyncQueue
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
q = SyncQueue.from_url(sys.argv[1], prefix=sys.argv[2])
job_id = q.enqueue(Job(type="noop", args={}), unique_key="reservation:42")
q.close()
print(json.dumps({"id": job_id, "duplicate": job_id.duplicate}))
"""


def test_fifty_producers_enqueue_one_unique_key_and_create_one_job(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """Each of 50 processes (started first, released together by a file) enqueues the same
    unique key: exactly one reports it created the job, all report the same id, and the
    stream holds one job."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, redis_url, prefix, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(50)
    ]
    time.sleep(1.0)  # most of them are importing or waiting for the file by now
    go.touch()
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers.append(json.loads(out))
    assert len({a["id"] for a in answers}) == 1
    assert sum(not a["duplicate"] for a in answers) == 1
    with redis.Redis.from_url(redis_url) as r:
        assert r.xlen(f"{prefix}:{{noop}}:jobs") == 1
        assert r.hget(f"{prefix}:{{noop}}:stats", "enqueued") == b"1"
        assert r.get(f"{prefix}:{{noop}}:unique:reservation:42") == answers[0]["id"].encode()
