"""An application that embeds a Worker and leaves structlog alone gets no debug lines."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EMBEDDED = """
    import asyncio
    import logging
    import sys
    from dataclasses import dataclass

    import structlog

    from streamq import Job, MemoryBackend, Queue, Registry, Worker

    if sys.argv[1] == "debug":
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))


    @dataclass(frozen=True)
    class Item:
        n: int


    async def step(job):
        pass


    def sync_step(job):
        pass


    async def main():
        registry = Registry()
        registry.register("a", Item, step)
        registry.register("b", Item, step, sync_step)
        backend = MemoryBackend()
        queue = Queue(backend, registry=registry)
        await queue.enqueue_many([Job(type=t, args=Item(n)) for t in "ab" for n in range(3)])
        worker = Worker(backend, registry, ["a", "b"], block=0.05)
        await worker.run(stop_when_empty=True)
        print("processed", worker.processed, flush=True)


    asyncio.run(main())
"""


def run_app(mode: str) -> str:
    """Run the embedding app; its stdout (where unconfigured structlog writes)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(EMBEDDED), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "processed 6" in done.stdout, done.stdout + done.stderr
    return done.stdout


def test_unconfigured_structlog_logs_info_and_up_only() -> None:
    """With structlog unconfigured, streamq's lines below INFO are dropped; INFO ones remain."""
    out = run_app("unconfigured")
    assert "streamq.worker.started" in out
    assert "streamq.worker.stopped" in out
    assert "streamq.job.started" not in out
    assert "streamq.job.succeeded" not in out
    assert "[debug" not in out


def test_an_application_that_configured_structlog_gets_what_it_asked_for() -> None:
    """An application that configured structlog at DEBUG sees streamq's debug lines."""
    out = run_app("debug")
    assert "streamq.worker.started" in out
    assert out.count("streamq.job.started") == 6
    assert out.count("streamq.job.succeeded") == 6
