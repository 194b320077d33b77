"""One timed phase of one library, in a process of its own: enqueue, drain, or a count.

    python -m benchmarks.peers._child {enqueue,drain,leftover} PEER URL [--jobs N]
        [--concurrency C] [--uvloop] [--timeout S]

Prints one JSON object on its stdout; anything the library prints goes to stderr. The process
imports only the adapter of PEER (and so only that library), configures stdlib logging and
structlog at WARNING, and runs on a fresh asyncio loop, or a uvloop one with ``--uvloop``.

- ``enqueue``: the adapter's producer is set up (connection, scripts, consumer group: untimed),
  then ``send(N)`` is timed (``perf_counter`` and ``process_time``).
- ``drain``: the adapter starts one worker at concurrency C; the clock starts just before the
  worker's run call (so the library's own start-up is inside it) and stops when the N-th handler
  has run. The worker is then let finish and stopped, untimed.
- ``leftover``: the adapter's own count of jobs still queued or in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import structlog

#: Peer name -> (adapter module, options for its ``consume``). Every library runs with its own
#: defaults; ``arq-poll10ms`` is arq with ``poll_delay`` at 10 ms instead of 500 ms (see README).
PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    "streamq": ("streamq", {}),
    "streaq": ("streaq", {}),
    "taskiq": ("taskiq", {}),
    "saq": ("saq", {}),
    "arq": ("arq", {}),
    "arq-poll10ms": ("arq", {"poll_delay": 0.01}),
}


class Tally:
    """Counts handler runs; records the clock when the worker starts and when the last one ran."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.reached = asyncio.Event()
        self.t0 = self.cpu0 = 0.0
        self.t_first: float | None = None
        self.t_end: float | None = None
        self.cpu_end: float | None = None

    def start(self) -> None:
        """Call just before the worker starts consuming."""
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def tick(self) -> None:
        """The handler's whole body."""
        self.count += 1
        if self.count == 1:
            self.t_first = time.perf_counter()
        if self.count == self.target:
            self.t_end, self.cpu_end = time.perf_counter(), time.process_time()
            self.reached.set()

    async def wait(self, worker: asyncio.Future[Any], limit_s: float) -> bool:
        """Wait for the target, unless the worker exits first or ``limit_s`` runs out."""
        reached = asyncio.ensure_future(self.reached.wait())
        try:
            await asyncio.wait([reached, worker], timeout=limit_s, return_when="FIRST_COMPLETED")
        finally:
            reached.cancel()
        return self.reached.is_set()


async def settle(done: Callable[[], bool], limit_s: float = 30.0) -> bool:
    """Poll until ``done()`` (the library says every job is finished), at most ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def adapter(peer: str) -> tuple[ModuleType, dict[str, Any]]:
    """The adapter module of a peer (importing it imports that library) and its options."""
    module, options = PEERS[peer]
    return importlib.import_module(f"benchmarks.peers._{module}"), options


def quiet_logs() -> None:
    """WARNING for every library: arq, SAQ, streaq and taskiq log each job at INFO."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().setLevel(logging.WARNING)
    # streamq logs through structlog (twice per job at debug); production setup, as in
    # benchmarks/conftest.py: filtered at WARNING, bound loggers cached.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )


async def enqueue(mod: ModuleType, url: str, jobs: int) -> dict[str, Any]:
    async with mod.producer(url) as send:
        t0, cpu0 = time.perf_counter(), time.process_time()
        await send(jobs)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"jobs": jobs, "seconds": seconds, "cpu_s": cpu}


async def drain(
    mod: ModuleType,
    options: dict[str, Any],
    url: str,
    jobs: int,
    concurrency: int,
    limit_s: float,
) -> dict[str, Any]:
    tally = Tally(jobs)
    t_call = time.perf_counter()
    counts = await mod.consume(url, tally, concurrency=concurrency, limit_s=limit_s, **options)
    t_stopped = time.perf_counter()
    out: dict[str, Any] = {
        "jobs": jobs,
        "handled": tally.count,
        "reached": tally.t_end is not None,
        **counts,
        "loop": type(asyncio.get_running_loop()).__module__,
        "setup_s": tally.t0 - t_call if tally.t0 else None,
    }
    if tally.t_end is not None and tally.cpu_end is not None:
        out["seconds"] = tally.t_end - tally.t0
        out["cpu_s"] = tally.cpu_end - tally.cpu0
        out["first_handler_s"] = (tally.t_first or tally.t0) - tally.t0
        out["finish_and_stop_s"] = t_stopped - tally.t_end
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers._child")
    parser.add_argument("phase", choices=("enqueue", "drain", "leftover"))
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)

    out, sys.stdout = sys.stdout, sys.stderr  # the protocol owns the real stdout
    quiet_logs()
    mod, options = adapter(args.peer)
    phase: Awaitable[dict[str, Any]]
    if args.phase == "enqueue":
        phase = enqueue(mod, args.url, args.jobs)
    elif args.phase == "drain":
        phase = drain(mod, options, args.url, args.jobs, args.concurrency, args.timeout)
    else:
        phase = mod.leftover(args.url)
    factory = None
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(phase)  # type: ignore[arg-type]
    out.write(json.dumps(result) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
