"""Producing: :class:`Queue`, which enqueues jobs (and inspects, from :class:`QueueInspector`).

The enqueue paths themselves are :class:`~streamq._enqueue.Enqueuer`'s (below the API layer, so
a running step's context can enqueue too). ``SyncQueue`` (in ``_sync``) wraps it for sync code.
"""

from __future__ import annotations

from typing import Any

from streamq._enqueue import (
    DEFAULT_MAX_JOB_SIZE,
    MAX_UNIQUE_KEY,
    UNIQUE_KEY_BOUND,
    Enqueuer,
    JobId,
    deadline_ms,
    delay_in_ms,
)
from streamq._inspect import QueueInspector
from streamq._registry import Registry
from streamq._settings import connect
from streamq.backends._base import Backend

__all__ = [
    "DEFAULT_MAX_JOB_SIZE",
    "MAX_UNIQUE_KEY",
    "UNIQUE_KEY_BOUND",
    "JobId",
    "Queue",
    "deadline_ms",
    "delay_in_ms",
]


class Queue(Enqueuer, QueueInspector):
    """Enqueue jobs and look at queues (the inspection methods are :class:`QueueInspector`'s).

    Args:
        backend: where jobs go.
        registry: when given, args are validated against the registered type at enqueue and an
            unregistered type is refused, so a bad job never reaches a stream.
        max_job_size: encoded jobs larger than this many bytes are refused (0: no limit).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        registry: Registry | None = None,
        max_job_size: int = DEFAULT_MAX_JOB_SIZE,
    ) -> None:
        QueueInspector.__init__(self, backend)
        Enqueuer.__init__(self, backend, registry=registry, max_job_size=max_job_size)

    @classmethod
    def from_url(cls, url: str | None = None, *, prefix: str | None = None, **kwargs: Any) -> Queue:
        """A queue on Redis at ``url`` (see :func:`resolve_url`)."""
        return cls(connect(url, prefix=prefix), **kwargs)
