"""The programs under docs/examples run as written, against the test session's own server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from handlers.noop import NoopArgs
from streamq import Job, Queue, Registry, Worker
from streamq.backends.redis import RedisBackend

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
QUICKSTART_JOBS = 5


@pytest.fixture
def example_env(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    """The environment of an example: this test's server and key prefix, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMQ_")}
    env["STREAMQ_REDIS_URL"] = redis_url
    env["STREAMQ_PREFIX"] = prefix
    # Were the URL ignored, an embedded server would start here, not in the user's state folder.
    env["STREAMQ_STATE_DIR"] = str(tmp_path / "state")
    # The examples import the application's own ``handlers`` package, as a program started in the
    # project's folder would (the wheel installs no top-level ``handlers``).
    env["PYTHONPATH"] = str(EXAMPLES.parents[1])
    return env


def run_example(name: str, env: dict[str, str]) -> str:
    """Run ``docs/examples/<name>`` with this interpreter; return its stdout after exit 0."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def test_quickstart_processes_every_job_it_enqueues(example_env: dict[str, str]) -> None:
    """quickstart.py drains what it enqueued: each job delivered once, counters agree."""
    out = run_example("quickstart.py", example_env)
    lines = out.splitlines()
    assert lines[0] == f"enqueued {QUICKSTART_JOBS} jobs"
    delivered = [line for line in lines if line.startswith("delivered ")]
    assert len(delivered) == QUICKSTART_JOBS
    assert len({line.split()[1] for line in delivered}) == QUICKSTART_JOBS
    assert any(line.endswith(": Hello, Ada!") for line in delivered)
    assert f"processed {QUICKSTART_JOBS} jobs" in lines
    assert lines[-1] == (
        f"stats: waiting=0 in_flight=0 enqueued={QUICKSTART_JOBS} "
        f"processed={QUICKSTART_JOBS} failed=0 dead=0"
    )


def test_quickstart_keeps_its_keys_under_the_given_prefix(
    example_env: dict[str, str], redis_url: str, prefix: str
) -> None:
    """quickstart.py honours STREAMQ_PREFIX: the counters are found under that prefix only."""
    run_example("quickstart.py", example_env)

    async def counts() -> tuple[int, int]:
        async with Queue(RedisBackend(redis_url, prefix=prefix)) as ours:
            [mine] = await ours.stats(["greet"])
        async with Queue(RedisBackend(redis_url, prefix=prefix + "-other")) as other:
            [theirs] = await other.stats(["greet"])
        return mine.processed, theirs.enqueued

    assert asyncio.run(counts()) == (QUICKSTART_JOBS, 0)


def test_sync_producer_enqueues_a_real_noop_job(
    example_env: dict[str, str], redis_url: str, prefix: str
) -> None:
    """sync_producer.py prints a UUID4 whose noop job waits in the stream and then runs."""
    out = run_example("sync_producer.py", example_env)
    job_id = out.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id), out
    assert uuid.UUID(job_id).version == 4

    seen: list[Job[Any]] = []

    async def record(job: Job[Any]) -> None:
        seen.append(job)

    registry = Registry()
    registry.register("noop", NoopArgs, record)

    async def check() -> tuple[int, int, int]:
        backend = RedisBackend(redis_url, prefix=prefix)
        async with Queue(backend) as queue:
            [before] = await queue.stats(["noop"])
            worker = Worker(backend, registry, ["noop"], claim_after=2.0, heartbeat=0.5, block=0.05)
            await worker.run(stop_when_empty=True)
            [after] = await queue.stats(["noop"])
        return before.waiting, before.enqueued, after.processed

    assert asyncio.run(check()) == (1, 1, 1)
    [job] = seen
    assert job.id == job_id
    assert job.type == "noop"
    assert job.args == NoopArgs(sleep=0.01)
    assert job.account_id == 42
    assert job.request_id == "req-0001"


def test_periodic_example_runs_each_tick_once(example_env: dict[str, str]) -> None:
    """periodic.py: two workers of an every(0.5 s) schedule run each tick's job once."""
    lines = run_example("periodic.py", example_env).splitlines()
    ticks = [line.split()[1] for line in lines if line.startswith("tick ")]
    assert 3 <= len(ticks) <= 6, lines
    assert len(set(ticks)) == len(ticks)
    # A tick that fired just as the workers stopped waits in the stream for the next run.
    assert lines[-1] in {
        f"enqueued {n} jobs, processed {len(ticks)}" for n in (len(ticks), len(ticks) + 1)
    }


def test_pause_example_holds_the_jobs_until_the_resume(example_env: dict[str, str]) -> None:
    """pause.py: the running job finishes, the two enqueued while paused wait, then run."""
    lines = run_example("pause.py", example_env).splitlines()
    assert lines[:4] == [
        "paused launch",
        "launched reservation 1",
        "waiting 2, paused True: cloud API incident",
        "resumed launch",
    ], lines
    assert sorted(lines[4:6]) == ["launched reservation 2", "launched reservation 3"], lines
    assert lines[6:] == ["processed 3, waiting 0, paused False"], lines


def test_steps_example_resumes_at_the_step_that_failed(example_env: dict[str, str]) -> None:
    """steps.py: describe fails twice; reserve and launch ran once, describe three times with
    the ids launch saved."""
    lines = run_example("steps.py", example_env).splitlines()
    assert lines == [
        "reserve 42",
        "launch i-42-0 i-42-1",
        "describe i-42-0 i-42-1 (delivery 1)",
        "describe i-42-0 i-42-1 (delivery 2)",
        "describe i-42-0 i-42-1 (delivery 3)",
        "processed=1 failed=2 dead=0",
    ]
