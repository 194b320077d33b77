"""streamq: background jobs for Python on Redis Streams consumer groups."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from streamq._context import JobContext
from streamq._flow import Limit, Rate
from streamq._inspect import ConsumerStats, PendingJob, TypeStats
from streamq._job import Job, Principal
from streamq._job_state import JobState
from streamq._producer import JobId, Queue
from streamq._registry import JobType, Registry
from streamq._settings import connect, resolve_url
from streamq._sync import SyncQueue
from streamq._worker import Worker
from streamq.backends._base import Backend, DeadEntry
from streamq.backends._partitions import Partitions
from streamq.backends._priority import PRIORITIES
from streamq.backends._records import CancelResult
from streamq.backends.memory import MemoryBackend
from streamq.backends.redis import RedisBackend
from streamq.exceptions import (
    BackendError,
    CheckpointError,
    ConfigError,
    InvalidJobError,
    JobError,
    JobTimeoutError,
    JobTooLargeError,
    NonRetryable,
    Retry,
    ServerError,
    StreamqError,
    UnknownJobTypeError,
)

try:
    __version__ = version("streamq")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"

__all__ = [
    "Limit",
    "Rate",
    "Backend",
    "BackendError",
    "CancelResult",
    "CheckpointError",
    "ConfigError",
    "ConsumerStats",
    "DeadEntry",
    "InvalidJobError",
    "Job",
    "JobContext",
    "JobError",
    "JobId",
    "JobState",
    "JobTimeoutError",
    "JobTooLargeError",
    "JobType",
    "MemoryBackend",
    "NonRetryable",
    "PRIORITIES",
    "Partitions",
    "PendingJob",
    "Principal",
    "Queue",
    "RedisBackend",
    "Registry",
    "Retry",
    "ServerError",
    "StreamqError",
    "SyncQueue",
    "TypeStats",
    "UnknownJobTypeError",
    "Worker",
    "__version__",
    "connect",
    "resolve_url",
]
