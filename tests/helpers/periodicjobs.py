"""A registry with a periodic job for the process tests (``--handlers periodicjobs``).

``beat`` is enqueued every second (``registry.every(1.0, "beat")``); each run adds its job id to
the hash ``{prefix}:{beat}:seen`` (job id -> runs), so a test counts the ticks that ran across
processes. ``digest`` has a cron schedule and is never served: ``streamq schedules`` lists it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import redis

from streamq import Job, Registry

_client: redis.Redis | None = None


@dataclass(frozen=True)
class Beat:
    """The args of ``beat``."""

    source: str = ""


def seen_key(prefix: str) -> str:
    """The hash of the job ids of ``beat`` that ran."""
    return f"{prefix}:{{beat}}:seen"


def record(job: Job[Any]) -> None:
    """Record that this tick's job ran (a sync step: the step threads run it)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["STREAMQ_REDIS_URL"])
    _client.hincrby(seen_key(os.environ["STREAMQ_PREFIX"]), str(job.id), 1)


registry = Registry()
registry.register("beat", Beat, record)
registry.register("digest", Beat, record)
registry.every(1.0, "beat", args={"source": "every"})
registry.cron("0 9 * * MON-FRI", "digest", tz="Europe/Riga")
