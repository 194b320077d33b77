"""The liveness file: a worker touches it every heartbeat; ``streamq health`` reads its age.

What the file says is that the process and its event loop are alive: the touch runs on its own
task, every heartbeat, whether or not the server answers. It does not say that Redis answers.
A liveness probe that failed during a Redis outage would have the orchestrator restart every
worker at once, which fixes nothing and cuts short the jobs they hold (readiness for Redis is
what ``streamq workers`` and the dashboard show). A worker whose event loop is blocked (a
handler that never yields, a deadlock) stops touching it, and a restart is the cure.

The file holds the worker's pid and heartbeat as JSON, written once at start (and again if the
file disappears); each heartbeat then only sets its modification time. ``streamq health`` takes
its default ``--max-age`` from that heartbeat: :data:`BEATS` of them.

One file per process: with several worker processes each needs its own path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from streamq._logging import logger
from streamq._worker.state import WorkerState

#: Heartbeats a file may miss before ``streamq health`` calls the worker dead (its default).
BEATS = 3


class HealthFile:
    """Touches ``path`` every ``heartbeat`` seconds until the worker closes."""

    def __init__(self, path: str | os.PathLike[str], *, heartbeat: float) -> None:
        self.path = Path(path)
        self._heartbeat = heartbeat
        self._failing = False

    def touch(self, *, rewrite: bool = False) -> None:
        """Set the file's modification time to now (write it first if it is missing, or with
        ``rewrite``). An error is logged once per run of failures, never raised: the worker
        goes on, and the probe, seeing a stale file, says so."""
        try:
            if rewrite or not self.path.exists():
                self._write()
            else:
                os.utime(self.path)
        except OSError as exc:
            if not self._failing:
                logger.warning(
                    "streamq.worker.health_file_failed", path=str(self.path), error=str(exc)
                )
            self._failing = True
            return
        self._failing = False

    def _write(self) -> None:
        # Written whole, then renamed: a probe never reads half a file.
        doc = {"pid": os.getpid(), "heartbeat_s": self._heartbeat}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc) + "\n")
        tmp.replace(self.path)

    async def loop(self, state: WorkerState) -> None:
        """Touch now (the worker has started), then every heartbeat until the worker closes:
        through the shutdown grace too, so that a worker draining its jobs is not killed."""
        self.touch(rewrite=True)  # a file left by an earlier run names another pid
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.closing.wait(), self._heartbeat)
            if state.closing.is_set():
                return
            self.touch()


@dataclass(frozen=True, slots=True)
class Health:
    """What ``streamq health`` read: the file's age, the limit, and whether it is fresh."""

    age_s: float
    max_age_s: float
    pid: int | None

    @property
    def fresh(self) -> bool:
        """Whether the worker touched the file within the limit."""
        return self.age_s <= self.max_age_s


def read_health(path: str | os.PathLike[str], max_age: float | None = None) -> Health:
    """The age of the health file at ``path`` against ``max_age`` (default: :data:`BEATS`
    heartbeats, as the file says).

    Raises:
        FileNotFoundError: no file there (no worker started with it, or not yet).
        ValueError: ``max_age`` is None and the file does not say its heartbeat.
    """
    p = Path(path)
    age = max(0.0, time.time() - p.stat().st_mtime)
    pid: int | None = None
    beat: float | None = None
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        doc = json.loads(p.read_text())
        pid = int(doc["pid"])
        beat = float(doc["heartbeat_s"])
    if max_age is None:
        if beat is None or beat <= 0:
            raise ValueError(f"{path} does not say its worker's heartbeat: give --max-age")
        max_age = BEATS * beat
    return Health(age_s=age, max_age_s=max_age, pid=pid)
