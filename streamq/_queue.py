"""Producing and inspecting: Queue (async; SyncQueue, in _sync, wraps it for sync code)."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from streamq import _codec, _tracing
from streamq._job import Job
from streamq._logging import logger
from streamq._registry import Registry, check_type_name, seconds
from streamq.backends._base import Backend, DeadEntry
from streamq.backends._partitions import Partitions, parse_partitions
from streamq.exceptions import BackendError, ConfigError

T = TypeVar("T")

DEFAULT_MAX_JOB_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """One consumer of a type's group: entries it holds and seconds since it last read."""

    in_flight: int
    idle_s: float


@dataclass(frozen=True, slots=True)
class TypeStats:
    """Where the jobs of one type are, and what became of them."""

    type: str
    #: enqueued, not yet delivered to any worker
    waiting: int
    #: in the PEL: delivered and not yet acked (running, or awaiting a retry), all workers
    in_flight: int
    #: age (since enqueue) of the oldest job in flight
    oldest_in_flight_s: float | None
    #: in the dead stream now
    dead: int
    enqueued: int
    processed: int
    #: deliveries whose handler raised or timed out
    failed: int
    retried: int
    #: jobs ever dead-lettered (the dead stream is capped, and can be purged or retried)
    dead_lettered: int
    consumers: dict[str, ConsumerStats]


@dataclass(frozen=True, slots=True)
class PendingJob:
    """One job in flight (or awaiting its retry), from the PEL."""

    job_id: str | None
    entry_id: str
    consumer: str
    idle_s: float
    deliveries: int


#: The URL form that asks for the embedded server explicitly (``STREAMQ_REDIS_URL=embedded:``).
EMBEDDED_URL = "embedded:"
# (pid, socket URL) pairs already announced: the fallback is said once per process and server.
_announced: set[tuple[int, str]] = set()


def is_embedded_url(url: str) -> bool:
    """Whether ``url`` is the explicit ``embedded:`` form."""
    return url.strip().lower() == EMBEDDED_URL


def embedded_allowed() -> bool:
    """Whether a missing URL may fall back to the embedded server (``STREAMQ_EMBEDDED``)."""
    raw = os.environ.get("STREAMQ_EMBEDDED", "").strip().lower()
    if raw not in ("", "1", "true", "yes", "0", "false", "no"):
        raise ConfigError(f"STREAMQ_EMBEDDED={raw!r} must be 1 or 0")
    return raw not in ("0", "false", "no")


def resolve_url(url: str | None = None, *, announce: bool = True) -> str:
    """``url``, else ``STREAMQ_REDIS_URL``, else the embedded server (started on demand).

    The embedded server is a machine-local one (see ``streamq server``): a producer deployed
    without ``STREAMQ_REDIS_URL`` would enqueue into its own machine. So the fallback is never
    silent: it is logged once per process (``streamq.embedded_server``, at WARNING, naming the
    socket; at INFO when asked for with the ``embedded:`` URL), unless ``announce`` is false
    (the CLI says so on stderr instead). With ``STREAMQ_EMBEDDED=0`` a missing URL is a
    :class:`ConfigError`.
    """
    url = url or os.environ.get("STREAMQ_REDIS_URL") or None
    if url is not None and not is_embedded_url(url):
        return url
    if url is None and not embedded_allowed():
        raise ConfigError(
            "STREAMQ_REDIS_URL is not set and STREAMQ_EMBEDDED=0 forbids the embedded server: "
            "set STREAMQ_REDIS_URL=redis://HOST:6379/0 (or STREAMQ_REDIS_URL=embedded: for "
            "the machine-local server)"
        )
    from streamq._server import ensure_server  # lazy: only when no URL is given

    embedded = ensure_server()
    if announce and (os.getpid(), embedded) not in _announced:
        _announced.add((os.getpid(), embedded))
        if url is not None:  # asked for
            logger.info("streamq.embedded_server", socket=embedded.removeprefix("unix://"))
        else:
            logger.warning(
                "streamq.embedded_server",
                socket=embedded.removeprefix("unix://"),
                hint="STREAMQ_REDIS_URL is not set: jobs go to this machine's embedded server; "
                "set it to your Redis, or STREAMQ_EMBEDDED=0 to make a missing URL an error",
            )
    return embedded


def connect(
    url: str | None = None,
    *,
    prefix: str | None = None,
    partitions: Mapping[str, Partitions | int] | None = None,
) -> Backend:
    """A Redis backend for ``url`` (see :func:`resolve_url`).

    Settings not given here come from the environment:

    - ``STREAMQ_REDIS_URL`` and ``STREAMQ_EMBEDDED``: the server (see :func:`resolve_url`);
    - ``STREAMQ_PREFIX``: the key prefix (default ``streamq``);
    - ``STREAMQ_SOCKET_TIMEOUT``: seconds a silent server may take before a call fails
      (default 10);
    - ``STREAMQ_CLUSTER=1``: use the Redis Cluster client (as ``?cluster=true`` in the URL);
    - ``STREAMQ_PARTITIONS``: partitioned types, e.g. ``launch=3,report=4:account_id``;
    - ``STREAMQ_WAIT_REPLICAS`` and ``STREAMQ_WAIT_TIMEOUT_MS``: after each enqueue, wait until
      that many replicas have the jobs (default 0: do not wait; timeout 1000 ms).
    """
    from streamq.backends.redis import RedisBackend  # lazy: importing streamq stays light

    socket_timeout = _env_number("STREAMQ_SOCKET_TIMEOUT", "10", float)
    if socket_timeout <= 0:
        raise ConfigError(f"STREAMQ_SOCKET_TIMEOUT={socket_timeout!r} must be positive")
    cluster_env = os.environ.get("STREAMQ_CLUSTER", "").strip().lower()
    if cluster_env not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"STREAMQ_CLUSTER={cluster_env!r} must be 1 or 0")
    if partitions is None:
        partitions = parse_partitions(os.environ.get("STREAMQ_PARTITIONS", ""))
    return RedisBackend(
        resolve_url(url),
        prefix=prefix or os.environ.get("STREAMQ_PREFIX", "streamq"),
        socket_timeout=socket_timeout,
        cluster=True if cluster_env in ("1", "true", "yes") else None,
        partitions=partitions,
        wait_replicas=int(_env_number("STREAMQ_WAIT_REPLICAS", "0", int)),
        wait_timeout_ms=int(_env_number("STREAMQ_WAIT_TIMEOUT_MS", "1000", int)),
    )


def _env_number(name: str, default: str, kind: Callable[[str], float]) -> float:
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        what = "a number of seconds" if kind is float else "a whole number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} cannot be negative")
    return value


class Queue:
    """Enqueue jobs and look at queues.

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
        self._stream: Callable[[str], str] = getattr(backend, "jobs_key", str)

    @classmethod
    def from_url(cls, url: str | None = None, *, prefix: str | None = None, **kwargs: Any) -> Queue:
        """A queue on Redis at ``url`` (see :func:`resolve_url`)."""
        return cls(connect(url, prefix=prefix), **kwargs)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend's connections."""
        await self.backend.aclose()

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

    async def enqueue(self, job: Job[Any]) -> str:
        """Add one job; returns its id (the job's own, or a new UUID)."""
        with (
            _tracing.send_span({job.type: 1}, self._stream)
            if _tracing.enabled()
            else _tracing.NO_CARRIER
        ) as carrier:
            (new_id,) = _codec.new_ids(1)
            job_id, fields = self._encode(job, carrier, new_id)
            await self._send(self.backend.enqueue(job.type, fields), 1)
        _tracing.count(_tracing.ENQUEUED, job.type)
        return job_id

    async def enqueue_many(self, jobs: Iterable[Job[Any]]) -> list[str]:
        """Add many jobs in one round trip; all are encoded (and checked) before any is sent."""
        jobs = list(jobs)
        per_type = Counter(job.type for job in jobs)
        ids: list[str] = []
        items: list[tuple[str, _codec.Fields]] = []
        traced = per_type and _tracing.enabled()
        span = _tracing.send_span(per_type, self._stream) if traced else _tracing.NO_CARRIER
        with span as carrier:
            for job, new_id in zip(jobs, _codec.new_ids(len(jobs)), strict=True):
                job_id, fields = self._encode(job, carrier, new_id)
                ids.append(job_id)
                items.append((job.type, fields))
            await self._send(self.backend.enqueue_many(items), len(items))
        for job_type, n in per_type.items():
            _tracing.count(_tracing.ENQUEUED, job_type, n)
        return ids

    async def _send(self, write: Awaitable[Any], jobs: int) -> None:
        """Await the write; a failure is logged here (the caller gets the error to retry)."""
        try:
            await write
        except BackendError as exc:
            logger.warning("streamq.enqueue.failed", jobs=jobs, error=str(exc))
            raise

    async def stats(self, types: Sequence[str]) -> list[TypeStats]:
        """Stats of each type, read from the server (global across all workers)."""
        out = []
        for t in types:
            raw = await self.backend.stats(t)
            c = raw.counters
            out.append(
                TypeStats(
                    type=t,
                    waiting=max(0, raw.length - raw.pending),
                    in_flight=raw.pending,
                    oldest_in_flight_s=None
                    if raw.oldest_pending_age_ms is None
                    else raw.oldest_pending_age_ms / 1000,
                    dead=raw.dead,
                    enqueued=c["enqueued"],
                    processed=c["processed"],
                    failed=c["failed"],
                    retried=c["retried"],
                    dead_lettered=c["dead"],
                    consumers={
                        name: ConsumerStats(n, idle / 1000)
                        for name, (n, idle) in sorted(raw.consumers_detail.items())
                    },
                )
            )
        return out

    async def pending(
        self,
        type: str,
        *,
        consumer: str | None = None,
        min_idle: float | timedelta = 0.0,
        limit: int = 100,
        scan: int = 10_000,
    ) -> list[PendingJob]:
        """The ``limit`` jobs in flight for ``type`` idle longest, with their job ids.

        The PEL lists entries in id order, not by idle time: the first ``scan`` entries are
        read (ids and idle times only, cheap) and sorted, then the job ids of the ``limit``
        longest idle are fetched.
        """
        rows = await self.backend.pending(
            type,
            consumer=consumer,
            min_idle_ms=int(seconds(min_idle) * 1000),
            limit=max(limit, scan),
        )
        rows = sorted(rows, key=lambda r: r.idle_ms, reverse=True)[:limit]
        fields = await self.backend.fetch(type, [r.entry_id for r in rows])
        jobs = [
            PendingJob(
                job_id=_codec.job_id_of(fields.get(r.entry_id, {})),
                entry_id=r.entry_id,
                consumer=r.consumer,
                idle_s=r.idle_ms / 1000,
                deliveries=r.deliveries,
            )
            for r in rows
        ]
        return sorted(jobs, key=lambda j: j.idle_s, reverse=True)

    async def types(self) -> list[str]:
        """The job types that exist on the server (a stream, dead letters or counters)."""
        return await self.backend.types()

    async def recover(
        self, type: str, *, min_idle: float | timedelta, dry_run: bool = False, limit: int = 10_000
    ) -> list[PendingJob]:
        """Hand jobs in flight for at least ``min_idle`` back for delivery now.

        Each is moved to the end of the stream as a new entry (fresh delivery count), so the
        next read of any worker gets it, without waiting for a recovery pass after claim_after.
        If the old holder is still running it, its ack finds the entry gone (a lost lease, logged)
        — the job may run twice, as at-least-once allows. Returns the jobs handed back (with
        ``dry_run``, the ones that would be).
        """
        stuck = await self.pending(type, min_idle=min_idle, limit=limit)
        if dry_run or not stuck:
            return stuck
        min_idle_ms = int(seconds(min_idle) * 1000)
        moved = set(await self.backend.requeue(type, [p.entry_id for p in stuck], min_idle_ms))
        return [p for p in stuck if p.entry_id in moved]

    async def prune_consumers(self, types: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Remove consumers that have no live worker and hold no entry; returns (type, name)."""
        live = {w["id"] for w in await self.backend.workers()}
        removed = []
        for t in types if types is not None else await self.types():
            raw = await self.backend.stats(t)
            for name, (held, _idle) in raw.consumers_detail.items():
                if name not in live and held == 0 and await self.backend.remove_consumer(t, name):
                    removed.append((t, name))
        return removed

    async def dead(self, type: str, *, limit: int = 100) -> list[DeadEntry]:
        """Dead-lettered jobs of ``type``, oldest first."""
        return await self.backend.dead_list(type, limit)

    async def retry_dead(self, type: str, job_ids: Sequence[str] | None = None) -> list[str]:
        """Put dead jobs back (all when ``job_ids`` is None); returns the job ids re-driven.

        Only jobs this call really re-drove are returned: one retried or purged by someone else
        between the listing and the retry is not (the CLI then names it as not found).
        """
        dead = await self.backend.dead_list(type, 1_000_000)
        wanted = None if job_ids is None else set(job_ids)
        chosen = {d.dead_id: d for d in dead if wanted is None or d.job_id in wanted}
        redriven = await self.backend.dead_retry(type, list(chosen))
        if redriven:
            _tracing.count(_tracing.ENQUEUED, type, len(redriven))
        return [chosen[i].job_id or i for i in redriven if i in chosen]

    async def purge_dead(self, type: str) -> int:
        """Delete every dead letter of ``type``; returns how many."""
        return await self.backend.dead_purge(type)

    async def workers(self) -> list[dict[str, str]]:
        """Live workers' heartbeat records."""
        return await self.backend.workers()
