"""The enqueue core: encode (and validate), unique keys, deadlines, the producer span, the
write. :class:`~streamq._producer.Queue` is one (with the inspection methods); a running step's
:class:`~streamq._context.JobContext` uses one to enqueue a follow-up, which is why it lives
below the API layer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from streamq import _codec, _tracing
from streamq._job import Job
from streamq._logging import logger
from streamq._registry import Registry, check_type_name, seconds
from streamq.backends._base import F_EXPIRES, F_PRIORITY, F_UNIQUE, F_UNIQUE_FOR, Backend
from streamq.backends._priority import DEFAULT, check_priority
from streamq.exceptions import BackendError, ConfigError

DEFAULT_MAX_JOB_SIZE = 1024 * 1024

T = TypeVar("T")

#: How long a unique key may outlive a job that vanished without streamq ending it (an entry
#: deleted by hand, a stream dropped), beyond the job's delay and ``unique_for``, in seconds.
UNIQUE_KEY_BOUND = 7 * 24 * 3600.0

#: The longest unique key accepted, in characters.
MAX_UNIQUE_KEY = 512


class JobId(str):
    """What :meth:`Queue.enqueue` returns: the job's id, a ``str``.

    ``duplicate`` is True when the enqueue named a ``unique_key`` that a job still holds:
    nothing was enqueued, and the id is that job's.
    """

    duplicate: bool

    def __new__(cls, value: str, duplicate: bool = False) -> JobId:
        self = super().__new__(cls, value)
        self.duplicate = duplicate
        return self


class Enqueuer:
    """Enqueues jobs on ``backend``: what :class:`~streamq._producer.Queue` documents.

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
        self.backend = backend
        self.registry = registry
        self.max_job_size = max_job_size
        # The stream a type's jobs travel on, for traces (the type itself on the memory backend).
        self._stream_name: Callable[[str], str] = getattr(backend, "jobs_key", str)

    def _encode(
        self, job: Job[Any], trace: Mapping[str, str], new_id: str
    ) -> tuple[str, _codec.Fields]:
        job_id = job.id or new_id
        check_type_name(job.type)
        if self.registry is not None:
            job_type = self.registry.get(job.type)
            args = _codec.convert_args(job_type.args, job.args, job_id=job_id, job_type=job.type)
            if args is not job.args:
                job = dataclasses.replace(job, args=args)
        return job_id, _codec.encode(job, job_id, trace=trace, max_size=self.max_job_size)

    async def enqueue(
        self,
        job: Job[Any],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: str = DEFAULT,
    ) -> JobId:
        """Add one job; returns its id (the job's own, or a new UUID) as a :class:`JobId`.

        Args:
            delay: run it no earlier than this long from now (seconds or a ``timedelta``).
            at: run it no earlier than this time (an aware ``datetime``).
            expires: its deadline: this long from now (seconds or a ``timedelta``) or this
                time (an aware ``datetime``). A delivery that would start after it does not
                run: the job goes to the dead stream with the reason ``expired``.
            unique_key: while a job enqueued with this key is scheduled, waiting, running or
                waiting for a retry, another enqueue with it creates nothing and returns that
                job's id, with ``duplicate`` True (docs/unique-jobs.md).
            unique_for: keep the key this long after the job ended (done or dead), so that a
                late repeat of the request is still absorbed.
            priority: ``high``, ``default`` or ``low`` (``streamq.PRIORITIES``): workers take
                higher levels first, and give a lower level with jobs waiting at least one of
                every ten slots (docs/flow-control.md, "Priorities"). Its retries keep it.

        A delay of 0 or less, or a time already past, enqueues it for now.

        Raises:
            ConfigError: both ``delay`` and ``at``, a naive ``at`` or ``expires``, an
                ``expires`` already past or before the job is due, a bad ``unique_key``, or an
                unknown ``priority`` (or one on a partitioned type).
        """
        if priority != DEFAULT:
            check_priority(priority)
        if unique_key is not None or unique_for is not None:
            return await self._enqueue_unique(
                job, delay, at, expires, unique_key, unique_for, priority
            )
        if delay is not None or at is not None or expires is not None or priority != DEFAULT:
            ids = await self.enqueue_many(
                [job], delay=delay, at=at, expires=expires, priority=priority
            )
            return JobId(ids[0])
        with (
            _tracing.send_span({job.type: 1}, self._stream_name)
            if _tracing.enabled()
            else _tracing.NO_CARRIER
        ) as carrier:
            (new_id,) = _codec.new_ids(1)
            job_id, fields = self._encode(job, carrier, new_id)
            await self._send(self.backend.enqueue(job.type, fields), 1)
        _tracing.count(_tracing.ENQUEUED, job.type)
        return JobId(job_id)

    async def _enqueue_unique(
        self,
        job: Job[Any],
        delay: float | timedelta | None,
        at: datetime | None,
        expires: float | timedelta | datetime | None,
        unique_key: str | None,
        unique_for: float | timedelta | None,
        priority: str = DEFAULT,
    ) -> JobId:
        if not isinstance(unique_key, str) or not unique_key:
            raise ConfigError("unique_key must be a non-empty string (unique_for needs one)")
        if len(unique_key) > MAX_UNIQUE_KEY:
            raise ConfigError(f"unique_key is longer than {MAX_UNIQUE_KEY} characters")
        keep_s = 0.0 if unique_for is None else seconds(unique_for)
        if keep_s < 0:
            raise ConfigError("unique_for must not be negative")
        delay_ms = delay_in_ms(delay, at)
        deadline = None if expires is None else deadline_ms(expires, delay_ms)
        per_type = {job.type: 1}
        traced = _tracing.enabled()
        span = _tracing.send_span(per_type, self._stream_name) if traced else _tracing.NO_CARRIER
        with span as carrier:
            (new_id,) = _codec.new_ids(1)
            _, fields = self._encode(job, carrier, new_id)
            if deadline is not None:
                fields[F_EXPIRES] = deadline
            fields[F_UNIQUE] = unique_key.encode()
            if priority != DEFAULT:
                fields[F_PRIORITY] = priority.encode()
            if keep_s > 0:
                fields[F_UNIQUE_FOR] = str(math.ceil(keep_s * 1000)).encode()
            bound_ms = int((UNIQUE_KEY_BOUND + keep_s) * 1000) + delay_ms
            holder, created = await self._send(
                self.backend.enqueue_unique(
                    job.type, fields, unique_key, delay_ms=delay_ms, ttl_ms=bound_ms
                ),
                1,
            )
        if created:
            _tracing.count(_tracing.ENQUEUED, job.type)
        return JobId(holder, duplicate=not created)

    async def enqueue_many(
        self,
        jobs: Iterable[Job[Any]],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        priority: str = DEFAULT,
    ) -> list[str]:
        """Add many jobs in one round trip; all are encoded (and checked) before any is sent.

        With ``delay`` or ``at`` (as for :meth:`enqueue`) they wait in their types' schedules
        until then: the workers of the type move them into the stream when they are due.
        ``expires`` gives each the same deadline, ``priority`` the same level (as for
        :meth:`enqueue`).
        """
        level = None if priority == DEFAULT else check_priority(priority).encode()
        delay_ms = delay_in_ms(delay, at)
        deadline = None if expires is None else deadline_ms(expires, delay_ms)
        jobs = list(jobs)
        per_type = Counter(job.type for job in jobs)
        ids: list[str] = []
        items: list[tuple[str, _codec.Fields]] = []
        traced = per_type and _tracing.enabled()
        span = _tracing.send_span(per_type, self._stream_name) if traced else _tracing.NO_CARRIER
        with span as carrier:
            for job, new_id in zip(jobs, _codec.new_ids(len(jobs)), strict=True):
                job_id, fields = self._encode(job, carrier, new_id)
                if deadline is not None:
                    fields[F_EXPIRES] = deadline
                if level is not None:
                    fields[F_PRIORITY] = level
                ids.append(job_id)
                items.append((job.type, fields))
            if delay_ms > 0:
                await self._send(self.backend.schedule_many(items, delay_ms), len(items))
            else:
                await self._send(self.backend.enqueue_many(items), len(items))
        for job_type, n in per_type.items():
            _tracing.count(_tracing.ENQUEUED, job_type, n)
        return ids

    async def _send(self, write: Awaitable[T], jobs: int) -> T:
        """Await the write; a failure is logged here (the caller gets the error to retry)."""
        try:
            return await write
        except BackendError as exc:
            logger.warning("streamq.enqueue.failed", jobs=jobs, error=str(exc))
            raise


def delay_in_ms(delay: float | timedelta | None, at: datetime | None) -> int:
    """How long from now a job waits, in ms (0: it is enqueued for now).

    Raises:
        ConfigError: both given, or ``at`` without a time zone.
    """
    if at is not None:
        if delay is not None:
            raise ConfigError("give either delay or at, not both")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ConfigError(f"at must be an aware datetime (with a time zone), not {at!r}")
        return max(0, int((at - datetime.now(at.tzinfo)).total_seconds() * 1000))
    if delay is None:
        return 0
    return max(0, int(seconds(delay) * 1000))


def deadline_ms(expires: float | timedelta | datetime, delay_ms: int = 0) -> bytes:
    """A job's deadline as its entry carries it: ms since the epoch, by this clock.

    Raises:
        ConfigError: a naive datetime, a deadline already past, or one before the job is due
            (``delay_ms`` from now): it could never run.
    """
    now_ms = time.time_ns() // 1_000_000
    if isinstance(expires, datetime):
        if expires.tzinfo is None or expires.utcoffset() is None:
            raise ConfigError(
                f"expires must be an aware datetime (with a time zone), not {expires!r}"
            )
        at_ms = int(expires.timestamp() * 1000)
    else:
        at_ms = now_ms + int(seconds(expires) * 1000)
    if at_ms <= now_ms:
        raise ConfigError(f"expires is already past ({expires!r}): nothing was sent")
    if at_ms <= now_ms + delay_ms:
        raise ConfigError(
            f"expires ({expires!r}) comes before the job is due: it could never run; "
            "nothing was sent"
        )
    return str(at_ms).encode()
