"""RedisBackend: the Backend protocol on Redis, composed of the modules that own each concern.

One stream per job type (or per partition), read through one consumer group. Where to look:

- ``_keys`` / ``_partitions``: the streams of a type and their keys; which stream an id names.
- ``_scripts`` (and the ``.lua`` files): the one place that loads the Lua scripts and names
  them (the hot paths send the ``EVALSHA`` it gives them through ``_routing``).
- ``_wire``: the redis-py client, held connections, one write per exchange (the only module
  reaching into redis-py's internals). ``_errors``: redis-py's errors as BackendError.
- ``_routing``: per-node fan-out on a cluster, MOVED/ASK/TRYAGAIN/NOSCRIPT, blocking reads.
- ``_groups``: consumer groups and the partition counts the server records.
- ``_producer``: enqueue. ``_unique``: unique jobs. ``_schedule``: delayed jobs. ``_reads``:
  read and ack. ``_leases``: refresh, retry (into the schedule), hand back, dead-letter, claim
  idle entries. ``_progress``: the step progress of jobs with several steps.
  ``_inspect``: stats, pending, dead letters, types, workers. ``_find``: one job by its id.
  ``_ticks``: periodic jobs. ``_pauses``: the paused types' marks. ``_cancel``: cancelling.
  ``_finished``: what an ack sends for the finished-job records, and how a lookup finds one.
- ``_operations``: the facade's calls that inspect and control (stats, dead letters, a job's
  lookup, workers, ticks, cancel, pause), as a base class of this one.
- ``_shared``: what those four are built on; ``_replies``: small readers of replies.

Imports go one way: ``_errors`` <- ``_wire`` <- ``_scripts`` <- ``_routing`` <- ``_shared`` <-
``_groups`` <- the four concerns <- this facade; ``_keys``, ``_partitions``, ``_finished`` and
``_replies`` talk to no server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streamq._urls import cluster_flag, redact_url
from streamq.backends._base import (
    AckedRead,
    Claimed,
    DeadLetter,
    Delivery,
    Fields,
    JobEnd,
    KeepDone,
    ScheduledEntry,
    StepProgress,
)
from streamq.backends._partitions import Partitions
from streamq.backends.redis._cancel import Canceller
from streamq.backends.redis._find import Finder
from streamq.backends.redis._flow import FlowCalls
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._inspect import Inspector
from streamq.backends.redis._keys import KeyLayout, StreamKeys
from streamq.backends.redis._leases import Leases
from streamq.backends.redis._operations import Operations
from streamq.backends.redis._pauses import Pauses
from streamq.backends.redis._producer import Producer
from streamq.backends.redis._progress import Progress
from streamq.backends.redis._reads import Reader
from streamq.backends.redis._routing import Router
from streamq.backends.redis._schedule import Scheduler
from streamq.backends.redis._scripts import ScriptRegistry
from streamq.backends.redis._shared import Shared
from streamq.backends.redis._ticks import Ticks
from streamq.backends.redis._unique import UniqueJobs
from streamq.backends.redis._wire import Wire
from streamq.exceptions import ConfigError


class RedisBackend(Operations):
    """Backend on a Redis (or Valkey) server, or on a Redis Cluster.

    On a Redis Cluster (``?cluster=true`` in the URL) the same calls go to the node that owns
    each stream's slot: commands for several streams are grouped by node, one exchange per node,
    sent concurrently; a read never spans slots. A type configured with ``Partitions(n)`` has
    ``n`` streams; its entry ids then carry their partition (``ID@P``).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; ``?cluster=true`` selects the
            cluster client (any node of the cluster will do as the address).
        prefix: first part of every key.
        group: consumer group name.
        socket_timeout: seconds before a silent server counts as gone (reads block less).
        cluster: use the cluster client (overrides the URL's ``cluster=`` option).
        partitions: per type, its :class:`Partitions` (or a plain count): its jobs spread over
            that many streams. The server keeps the largest count any process used, and every
            process uses that (reading it again every ``relearn_s``, producers too); producers
            of one type must agree on its key.
        wait_replicas: after each enqueue, wait until this many replicas have the jobs
            (``WAIT``); an enqueue they do not confirm in ``wait_timeout_ms`` raises.
        wait_timeout_ms: how long that wait may take.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "streamq",
        group: str = "workers",
        socket_timeout: float = 10.0,
        cluster: bool | None = None,
        partitions: Mapping[str, Partitions | int] | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.group = group
        self.socket_timeout = socket_timeout
        address, in_url = cluster_flag(url)
        self.cluster = bool(in_url if cluster is None else cluster)
        self._keys = keys = KeyLayout(prefix, partitions)
        if wait_replicas < 0 or wait_timeout_ms < 0:
            raise ConfigError("wait_replicas and wait_timeout_ms cannot be negative")
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._wire = wire = Wire(url, address, cluster=self.cluster, socket_timeout=socket_timeout)
        scripts = ScriptRegistry(wire)
        shared = Shared(wire, keys, scripts, Router(wire, scripts, wait_timeout_ms), group)
        self._groups = groups = StreamGroups(shared)
        self._producer = Producer(shared, groups, wait_replicas)
        self._reader = Reader(shared, groups, socket_timeout)
        self._leases = Leases(shared, groups)
        self._inspector = Inspector(shared, groups)
        self._scheduler = Scheduler(shared, groups, self._producer)
        self._ticks = Ticks(shared, groups, self._producer)
        self._unique = UniqueJobs(shared, groups, self._producer)
        self._finder = Finder(shared, groups)
        self._canceller = Canceller(shared, self._finder)
        self._pauses = Pauses(shared)
        self._progress = Progress(shared, groups)
        self._flow = FlowCalls(shared, groups)

    def __repr__(self) -> str:
        kind = ", cluster=True" if self.cluster else ""
        return f"RedisBackend({redact_url(self.url)!r}, prefix={self.prefix!r}{kind})"

    @property
    def partitions(self) -> dict[str, Partitions]:
        """This process's partition settings, per type (types with one partition left out)."""
        return self._keys.partitions

    @property
    def relearn_s(self) -> float:
        """Seconds before a partition count read from the server is read again."""
        return self._keys.relearn_s

    @relearn_s.setter
    def relearn_s(self, seconds: float) -> None:
        self._keys.relearn_s = seconds

    # keys ---------------------------------------------------------------------------------

    def jobs_key(self, type: str) -> str:
        """The stream of live jobs of ``type`` (its first partition's, when partitioned)."""
        return self._keys.streams(type)[0].jobs

    def dead_key(self, type: str) -> str:
        """The dead-letter stream of ``type`` (its first partition's, when partitioned)."""
        return self._keys.streams(type)[0].dead

    def stats_key(self, type: str) -> str:
        """The counters hash of ``type`` (its first partition's, when partitioned)."""
        return self._keys.streams(type)[0].stats

    def meta_key(self, type: str) -> str:
        """The hash recording how many partitions ``type`` has (in partition 0's slot)."""
        return self._keys.meta_key(type)

    def paused_key(self, type: str) -> str:
        """The hash that marks ``type`` paused (in partition 0's slot)."""
        return self._keys.paused_key(type)

    def streams(self, type: str) -> list[StreamKeys]:
        """The streams of ``type``: one, or one per partition (see :class:`KeyLayout`)."""
        return self._keys.streams(type)

    # groups and producing -----------------------------------------------------------------

    async def ensure_groups(self, types: Sequence[str]) -> None:
        """Create each stream and its group from id 0 (so no earlier job is skipped)."""
        await self._groups.ensure(types)

    async def enqueue(self, type: str, fields: Fields) -> str:
        """Append one job (XADD + counter in one script call)."""
        (entry_id,) = await self._producer.enqueue_many([(type, fields)])
        return entry_id

    async def enqueue_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """Append many jobs in one round trip per node, and count them (see ``_producer``)."""
        return await self._producer.enqueue_many(items)

    # the schedule ----------------------------------------------------------------------------

    async def schedule_many(self, items: Sequence[tuple[str, Fields]], delay_ms: int) -> None:
        """Put jobs in their streams' schedules, due ``delay_ms`` from now (see ``_schedule``)."""
        await self._scheduler.schedule_many(items, delay_ms)

    async def enqueue_unique(
        self, type: str, fields: Fields, key: str, *, delay_ms: int, ttl_ms: int
    ) -> tuple[str, bool]:
        """One job unless a job holds ``key`` (see ``_unique``); (holder's id, created)."""
        return await self._unique.enqueue_unique(
            type, fields, key, delay_ms=delay_ms, ttl_ms=ttl_ms
        )

    async def finish(
        self,
        type: str,
        consumer: str,
        jobs: Sequence[tuple[str, Fields]],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Ack owned unique jobs and release their keys (see ``_unique``), with the end-of-job
        keys of ``ends`` (and with ``keep`` their records); the ids lost."""
        return await self._unique.finish(type, consumer, jobs, ends, keep)

    async def move_due(self, types: Sequence[str], limit: int) -> int:
        """Move the due jobs of the types' schedules into their streams; how many moved."""
        return await self._scheduler.move_due(types, limit)

    async def scheduled(self, type: str, limit: int) -> list[ScheduledEntry]:
        """The jobs waiting in the type's schedules, the soonest due first."""
        return await self._scheduler.scheduled(type, limit)

    # consuming ----------------------------------------------------------------------------

    async def read(
        self,
        types: Sequence[str],
        consumer: str,
        count: int,
        block_ms: int,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """XREADGROUP ``>`` over all types at once, asking for at most ``count`` entries in all
        (each type its ``shares``, when given)."""
        return await self._reader.read(types, consumer, count, block_ms, shares=shares)

    async def ack_and_read(
        self,
        acks: Mapping[str, Sequence[str]],
        types: Sequence[str],
        consumer: str,
        count: int,
        ends: Mapping[str, Sequence[JobEnd]] | None = None,
        keep: KeepDone | None = None,
        *,
        shares: Mapping[str, int] | None = None,
    ) -> AckedRead:
        """:meth:`ack` per type, then a :meth:`read` that does not block: one round trip per
        node."""
        return await self._reader.ack_and_read(
            acks, types, consumer, count, ends, keep, shares=shares
        )

    async def ack(
        self,
        type: str,
        consumer: str,
        entry_ids: Sequence[str],
        ends: Sequence[JobEnd] = (),
        keep: KeepDone | None = None,
    ) -> list[str]:
        """Ack + delete owned entries (and the end-of-job keys of ``ends``, with ``keep`` their
        records); returns the ids owned by others."""
        return await self._reader.ack(type, consumer, entry_ids, ends, keep)

    # leases, retries, recovery ------------------------------------------------------------

    async def refresh(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Lease heartbeat; returns the ids lost."""
        return await self._leases.refresh(type, consumer, entry_ids)

    async def retry_later(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        *,
        delay_ms: int,
        deliveries: int,
        error: str,
    ) -> int:
        """Move a failed entry into its schedule, its deliveries and error with it; the due
        time in ms, or 0 if not owned."""
        return await self._leases.retry_later(
            type, consumer, entry_id, delay_ms=delay_ms, deliveries=deliveries, error=error
        )

    async def release(
        self, type: str, consumer: str, entry_ids: Sequence[str], idle_ms: int
    ) -> None:
        """Make owned entries claimable by others now, the interrupted delivery not counted."""
        await self._leases.release(type, consumer, entry_ids, idle_ms)

    async def dead_letter(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        letter: DeadLetter,
        max_dead: int,
        fields: Fields | None = None,
        end: JobEnd | None = None,
    ) -> bool:
        """Move an owned entry to the dead stream (releasing a unique job's key, deleting its
        end-of-job keys), atomically."""
        return await self._leases.dead_letter(
            type, consumer, entry_id, letter, max_dead, fields, end=end
        )

    # step progress --------------------------------------------------------------------------

    async def record_progress(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        job_id: str,
        *,
        done: int,
        next_step: str,
        checkpoint: bytes | None,
        ttl_ms: int,
    ) -> bool:
        """Record the steps done by an owned entry's job (``progress.lua``); False if not
        owned."""
        return await self._progress.record(
            type,
            consumer,
            entry_id,
            job_id,
            done=done,
            next_step=next_step,
            checkpoint=checkpoint,
            ttl_ms=ttl_ms,
        )

    async def job_progress(
        self, type: str, job_id: str, *, entry_id: str | None = None
    ) -> StepProgress | None:
        """The step progress recorded for a job (see :meth:`Backend.job_progress`)."""
        return await self._progress.job_progress(type, job_id, entry_id=entry_id)

    async def remove_consumer(self, type: str, consumer: str, *, hand_over: bool = False) -> bool:
        """Remove a consumer that holds nothing (with ``hand_over``, once it handed its entries
        back); True when it is gone from every stream of the type."""
        return await self._leases.remove_consumer(type, consumer, hand_over=hand_over)

    async def claim_idle(
        self, type: str, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """XAUTOCLAIM with the delivery counts of what it claimed."""
        return await self._leases.claim_idle(type, consumer, min_idle_ms, count, cursor)

    async def aclose(self) -> None:
        """Close the connections (the held ones included)."""
        await self._wire.aclose()
