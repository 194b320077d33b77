"""The Redis backend: one stream per job type (or per partition), read through one consumer group.

The only module that imports ``redis``. Keys of one stream share its hash tag
(``{prefix}:{TYPE}:jobs``) so every multi-key script stays in one cluster slot. Multi-step
changes run as the Lua scripts beside this file, one round trip each.

On a Redis Cluster (``?cluster=true`` in the URL) the same calls go to the node that owns each
stream's slot: commands for several streams are grouped by node, one exchange per node, sent
concurrently; a read never spans slots. A type configured with ``Partitions(n)`` has ``n``
streams (see ``_partitions``); its entry ids then carry their partition (``ID@P``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from streamq._codec import F_BODY, job_id_of
from streamq._urls import UNPARSEABLE, cluster_flag, redact_url
from streamq.backends import _partitions
from streamq.backends._base import (
    COUNTERS,
    HANDED_BACK,
    AckedRead,
    Claimed,
    DeadEntry,
    DeadLetter,
    Delivery,
    Fields,
    PendingEntry,
    RawStats,
    split_count,
)
from streamq.backends._partitions import Partitions
from streamq.exceptions import BackendError, ConfigError

_OWNED = resources.files(__package__).joinpath("owned.lua").read_text()
#: What redis-py raises: its errors, and the cluster client's own (not RedisError subclasses).
_ERRORS = (rexc.RedisError, rexc.RedisClusterException)
#: The longest a read blocks when some partitions are outside its window (see _read_plan).
_PARTIAL_BLOCK_MS = 100


def too_old(version: object) -> str | None:
    """``version`` (INFO's ``redis_version``) when it is older than 7.0, else None."""
    major = str(version or "").split(".", 1)[0]
    return str(version) if major.isdigit() and int(major) < 7 else None


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Sequence[bytes]) -> Fields:
    if len(flat) == 6:
        # Three fields, as every entry streamq writes has (id, v, job): a dict display costs
        # half of the general way.
        k1, v1, k2, v2, k3, v3 = flat
        return {k1: v1, k2: v2, k3: v3}
    it = iter(flat)
    return dict(zip(it, it))  # noqa: B905 - a stream entry always has field/value pairs


def _pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """RESP-encode commands (arguments: bytes, str, int or float) in one buffer.

    redis-py's packer costs about 1 µs per argument here; an ack of a few hundred entry ids is
    that many arguments. This does the same at about a quarter of the cost.
    """
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                arg = arg.encode()
            elif isinstance(arg, int):
                arg = b"%d" % arg
            elif isinstance(arg, float):
                arg = repr(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


async def _write(conn: Any, data: bytes) -> None:
    """Send ``data`` on ``conn`` now, before this coroutine yields.

    redis-py's ``send_packed_command`` wraps the write in ``asyncio.wait_for`` when the
    connection has a socket timeout, and on Python 3.11 that runs the write in a new task: it
    goes out only after every task already scheduled has run. The worker wakes its lanes just
    before it sends its next read, so the read would leave only once the lanes had run their
    whole batch, and the server would idle while they ran. Here the bytes go to the transport at
    once (the transport sends what it can straight away); only waiting for a full send buffer to
    drain is bounded by the socket timeout.
    """
    if not conn.is_connected:
        await conn.connect()
    writer = getattr(conn, "_writer", None)
    if writer is None:  # a redis-py without it: its own send, later on Python 3.11
        await conn.send_packed_command(data)
        return
    if writer.transport.is_closing():
        # asyncio would drop the bytes silently; the reply would never come.
        raise rexc.ConnectionError("Connection closed while sending")
    try:
        writer.write(data)
        if writer.transport.get_write_buffer_size():
            async with asyncio.timeout(conn.socket_timeout):
                await writer.drain()
    except TimeoutError:
        raise rexc.TimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        raise rexc.ConnectionError(f"Error while writing to socket: {exc}") from exc


def _as_is(response: Any, **options: Any) -> Any:
    return response


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("@")[0].partition("-")
    return int(ms), int(seq or 0)


def _age_ms(entry_id: str, now_ms: int) -> int:
    return max(0, now_ms - _id_key(entry_id)[0])


def _moved(reply: Any) -> bool:
    """A reply saying the command did not run there: the slot lives elsewhere now (MOVED), is
    being moved (ASK), or its keys are split by a migration for the moment (TRYAGAIN)."""
    return isinstance(reply, rexc.AskError | rexc.TryAgainError)  # MovedError is an AskError


def _asked(reply: Any) -> bool:
    """ASK: this one command goes to the node named, after ASKING (the slot table stays)."""
    return isinstance(reply, rexc.AskError) and not isinstance(reply, rexc.MovedError)


#: How many times :meth:`RedisBackend._fan` sends a command again (NOSCRIPT, MOVED, ASK,
#: TRYAGAIN); the k-th TRYAGAIN waits _TRYAGAIN_S * 2**k first, at most _TRYAGAIN_MAX_S:
#: about 1.6 s in all, longer than a migration takes to move one type's few keys.
_ROUNDS = 8
_TRYAGAIN_S = 0.01
_TRYAGAIN_MAX_S = 0.5


class _Line:
    """A connection held for one hot path, whether a call is using it, and on a cluster the
    node object it came from (kept, so the client never drops a node whose connection we hold).
    """

    __slots__ = ("busy", "conn", "gone", "node")

    def __init__(self) -> None:
        self.conn: Any = None
        self.busy = False
        self.node: Any = None
        #: its node left the cluster: close the connection once the call using it ends
        self.gone = False


@dataclass(eq=False, slots=True)
class _Stream:
    """One stream of a type: the whole type, or one of its partitions."""

    type: str
    #: the partition number, or None when the type is not partitioned (plain entry ids)
    part: int | None
    jobs: str
    dead: str
    stats: str
    slot: int = field(init=False)

    def __post_init__(self) -> None:
        self.slot = key_slot(self.jobs.encode())

    def ref(self, entry_id: str) -> str:
        """The id callers see: the entry id, with ``@P`` on a partitioned type."""
        return entry_id if self.part is None else f"{entry_id}@{self.part}"


class _Located(dict[_Stream, list[str]]):
    """Entry ids per stream (see :meth:`RedisBackend._locate`), and how callers named them."""

    __slots__ = ("bad", "plain")

    def __init__(self) -> None:
        super().__init__()
        #: ids that name no stream of the type
        self.bad: list[str] = []
        #: partition 0's entry ids given without ``@0`` (delivered before the type grew)
        self.plain: set[str] = set()

    def ref(self, s: _Stream, entry_id: str) -> str:
        """The id of an entry of ``s`` as the caller named it."""
        if s.part is None or (self.plain and entry_id in self.plain):
            return entry_id
        return f"{entry_id}@{s.part}"


@dataclass(slots=True)
class _Blocked:
    """A blocking read on its own connection, and that connection's client id once known."""

    client_id: int | None = None
    known: asyncio.Event = field(default_factory=asyncio.Event)


class RedisBackend:
    """Backend on a Redis (or Valkey) server, or on a Redis Cluster.

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
        self.partitions = _partitions.normalize(partitions)
        if wait_replicas < 0 or wait_timeout_ms < 0:
            raise ConfigError("wait_replicas and wait_timeout_ms cannot be negative")
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        options: dict[str, Any] = {
            "decode_responses": False,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 30,
        }
        try:
            if self.cluster:
                self._r: Any = RedisCluster.from_url(address, **options)
            else:
                self._r = aioredis.Redis.from_url(address, **options)
        except (ValueError, rexc.RedisError) as exc:
            shown = redact_url(url)
            # redis-py's message quotes the part it choked on, which may be the password's.
            why = exc if shown != UNPARSEABLE else "percent-encode @ : / ? # in the password"
            raise ConfigError(f"invalid Redis URL {shown!r}: {why}") from None
        # redis-py's annotations assume str replies; in bytes mode some calls go through this
        # untyped alias rather than a cast at every call site.
        self._raw: Any = self._r
        # redis-py reshapes these replies by command name, and its XPENDING reshaping breaks on
        # the extended form; this module parses them itself.
        for cmd in ("XPENDING", "XINFO CONSUMERS"):
            self._r.set_response_callback(cmd, _as_is)
        self._scripts: dict[str, AsyncScript] = {}
        # Connections held for the hot paths (see _exchange), per purpose (and node).
        self._lines: dict[tuple[str, str], _Line] = {}
        self._streams_of: dict[str, list[_Stream]] = {}
        self._round_robin: dict[str, Iterator[int]] = {}
        self._rotation: dict[str, int] = {}
        # Partition counts recorded on the server, and when each was last read.
        self._recorded: dict[str, int] = {}
        self._learned_at: dict[str, float] = {}
        #: seconds before a partition count read from the server is read again
        self.relearn_s = 5.0
        self._ready = not self.cluster
        self._stale = False
        self._version_checked = False

    def __repr__(self) -> str:
        kind = ", cluster=True" if self.cluster else ""
        return f"RedisBackend({redact_url(self.url)!r}, prefix={self.prefix!r}{kind})"

    # keys ---------------------------------------------------------------------------------

    def jobs_key(self, type: str) -> str:
        """The stream of live jobs of ``type`` (its first partition's, when partitioned)."""
        return self.streams(type)[0].jobs

    def dead_key(self, type: str) -> str:
        """The dead-letter stream of ``type`` (its first partition's, when partitioned)."""
        return self.streams(type)[0].dead

    def stats_key(self, type: str) -> str:
        """The counters hash of ``type`` (its first partition's, when partitioned)."""
        return self.streams(type)[0].stats

    def meta_key(self, type: str) -> str:
        """The hash recording how many partitions ``type`` has (in partition 0's slot)."""
        return f"{self.prefix}:{{{type}}}:meta"

    def streams(self, type: str) -> list[_Stream]:
        """The streams of ``type``: one, or one per partition.

        The count is the larger of this process's setting and the count recorded on the server
        (which any process's larger setting raises), so a process set to fewer partitions than
        the type has, or to none, still reads and inspects all of them.
        """
        found = self._streams_of.get(type)
        if found is None:
            spec = self._spec(type)
            n = max(spec.count if spec else 1, self._recorded.get(type, 1))
            parts: list[int | None] = list(range(n)) if n > 1 else [None]
            found = []
            for p in parts:
                tag = _partitions.tag(type, p or 0)
                base = f"{self.prefix}:{{{tag}}}"
                found.append(_Stream(type, p, f"{base}:jobs", f"{base}:dead", f"{base}:stats"))
            self._streams_of[type] = found
        return found

    def _spec(self, type: str) -> Partitions | None:
        return self.partitions.get(type)

    async def _learn(self, types: Sequence[str], *, grow: bool = False) -> list[str]:
        """Read the partition counts the server records for ``types`` (first raising them to
        this process's setting when ``grow``); returns the types whose count changed here."""
        changed = []
        now = time.monotonic()
        for t in types:
            spec = self._spec(t)
            want = spec.count if grow and spec is not None else 0
            n = int(await self._call("partitions", [self.meta_key(t)], [want]))
            self._learned_at[t] = now
            if n != self._recorded.get(t, 1):
                before = len(self.streams(t))
                self._recorded[t] = n
                del self._streams_of[t]
                if len(self.streams(t)) != before:
                    changed.append(t)
        return changed

    async def _fresh(self, types: Sequence[str]) -> None:
        """Learn the partition counts of ``types`` not learned in the last few seconds; a type
        that gained partitions gets its new streams' groups."""
        now = time.monotonic()
        stale = [t for t in types if now - self._learned_at.get(t, -1e9) > self.relearn_s]
        if stale and (grown := await self._learn(stale)):
            await self.ensure_groups(grown)

    def _locate(self, type: str, refs: Sequence[str]) -> _Located:
        """Ids callers gave (``ID`` or ``ID@P``) as entry ids per stream, in order.

        An id without ``@P`` on a partitioned type was delivered before the type grew: it is
        partition 0's (that stream is the type's old one). An id naming no partition of the type
        goes to ``bad``, not to a stream: the caller answers for that id alone.
        """
        streams = self.streams(type)
        out = _Located()
        if len(streams) == 1:
            out[streams[0]] = list(refs)
            return out
        for ref in refs:
            try:
                p, entry_id = _partitions.split(ref, len(streams))
            except ConfigError:
                out.bad.append(ref)
                continue
            if p == 0 and "@" not in ref:
                out.plain.add(entry_id)
            out.setdefault(streams[p], []).append(entry_id)
        return out

    def _located(self, type: str, refs: Sequence[str]) -> _Located:
        """:meth:`_locate` for ids a person gave (inspection, the CLI): a bad one raises."""
        out = self._locate(type, refs)
        if out.bad:
            _partitions.split(out.bad[0], len(self.streams(type)))  # raises its ConfigError
        return out

    def _pick(self, type: str, fields: Fields) -> _Stream:
        """The stream a new job of ``type`` goes to."""
        streams = self.streams(type)
        if len(streams) == 1:
            return streams[0]
        spec = self._spec(type)
        if spec is None or spec.key is None:
            rr = self._round_robin.get(type)
            if rr is None:
                rr = self._round_robin[type] = itertools.count(os.getpid())
            return streams[next(rr) % len(streams)]
        value = _partitions.key_value(fields.get(F_BODY, b""), spec.key)
        return streams[_partitions.by_key(value, len(streams))]

    # scripts and errors -------------------------------------------------------------------

    def _script(self, name: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            body = resources.files(__package__).joinpath(f"{name}.lua").read_text()
            if "owned_split" in body:
                body = _OWNED + body
            script = self._scripts[name] = self._r.register_script(body)
        return script

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        await self._connect()
        try:
            return await self._script(name)(keys=keys, args=args)
        except _ERRORS as exc:
            raise self._wrap(exc) from exc

    def _wrap(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        where = redact_url(self.url)
        if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
            return BackendError(f"Redis at {where} refused the credentials: {exc}")
        if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
            return BackendError(f"cannot reach Redis at {where}: {exc}")
        if isinstance(exc, rexc.RedisClusterException) and "cannot be connected" in str(exc):
            return BackendError(f"cannot reach the Redis cluster at {where}: {exc}")
        if isinstance(exc, rexc.ClusterError | rexc.RedisClusterException):
            return BackendError(f"the Redis cluster at {where} is not ready: {exc}")
        if self.cluster and isinstance(exc, rexc.AskError):  # MovedError included
            return BackendError(
                f"the Redis cluster at {where} is moving slot {exc.slot_id} to "
                f"{exc.host}:{exc.port}: try again"
            )
        if self.cluster and isinstance(exc, rexc.TryAgainError):
            return BackendError(
                f"the Redis cluster at {where} is migrating a slot, and its keys stayed split "
                f"while streamq tried again ({exc}): try again"
            )
        if not self.cluster and isinstance(exc, rexc.MovedError | rexc.AskError):
            return BackendError(
                f"Redis at {where} answered MOVED {exc}: the server is part of a cluster ("
                "add ?cluster=true to the URL, or set STREAMQ_CLUSTER=1)"
            )
        return BackendError(f"Redis at {where} answered an error: {exc}")

    async def _connect(self) -> None:
        """Learn the cluster's slots (once, and again after a failover moved them)."""
        if self._ready and not self._stale:
            return
        try:
            if not self._ready:
                await self._r.initialize()
                self._ready = True
            else:
                self._stale = False
                await self._r.nodes_manager.initialize()
                await self._drop_departed_lines()
        except _ERRORS as exc:
            self._stale = self._ready
            raise self._wrap(exc) from exc

    async def _drop_departed_lines(self) -> None:
        """Close and forget the held connections to nodes no longer in the cluster (a failed
        master replaced by its replica, a node removed): nothing would ever use them again."""
        live = self._r.nodes_manager.nodes_cache
        for key, line in list(self._lines.items()):
            if key[1] and key[1] not in live:
                del self._lines[key]
                line.gone = True
                if not line.busy and line.conn is not None:
                    conn, line.conn = line.conn, None
                    await conn.disconnect(nowait=True)

    # groups -------------------------------------------------------------------------------

    async def ensure_groups(self, types: Sequence[str]) -> None:
        """Create each stream and its group from id 0 (so no earlier job is skipped)."""
        if not self._version_checked:
            await self._check_version()
        await self._learn(types, grow=True)
        for t in types:
            for s in self.streams(t):
                try:
                    await self._r.xgroup_create(s.jobs, self.group, id="0", mkstream=True)
                except rexc.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise self._wrap(exc) from exc
                except _ERRORS as exc:
                    raise self._wrap(exc) from exc

    # producing ----------------------------------------------------------------------------

    async def enqueue(self, type: str, fields: Fields) -> str:
        """Append one job (XADD + counter in one script call)."""
        (entry_id,) = await self.enqueue_many([(type, fields)])
        return entry_id

    async def enqueue_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """Append many jobs in one round trip per node, and count them.

        The jobs of one stream go in one script call (atomic, like every script). On one server,
        jobs of several streams go in one MULTI/EXEC: all or none. A cluster cannot run one
        transaction across slots: there each stream's share is atomic on its own.
        """
        if not items:
            return []
        # Record (first jobs of a type from this process) or learn again (every relearn_s) the
        # type's partitions, as readers do: a producer that kept an old count would send one
        # key to another partition than producers with the new count, out of order.
        now = time.monotonic()
        learned = self._learned_at
        if stale := {t for t, _ in items if now - learned.get(t, -1e9) > self.relearn_s}:
            await self._learn(sorted(stale), grow=True)
        groups: dict[_Stream, list[int]] = {}
        for i, (t, fields) in enumerate(items):
            groups.setdefault(self._pick(t, fields), []).append(i)
        batches = [(s, [items[i][1] for i in idx]) for s, idx in groups.items()]
        for _, batch in batches:
            if not batch[0] or any(len(f) != len(batch[0]) for f in batch):
                raise ConfigError("every job of one enqueue must have the same, non-empty fields")
        if len(batches) == 1 or self.cluster:
            sha = self._script("enqueue").sha
            work = [(s.jobs, ("EVALSHA", sha, 2, *self._append_args(s, b))) for s, b in batches]
            # Every node's share goes (whole=True: a node that fails does not stop the others),
            # so an error can say how many jobs of the call were written.
            replies = await self._fan("producer", work, wait=self.wait_replicas, whole=True)
            failed = [r for r in replies if isinstance(r, BaseException)]
            if failed:
                written = sum(
                    len(batch)
                    for (_, batch), reply in zip(batches, replies, strict=True)
                    if not isinstance(reply, BaseException)
                )
                raise self._partly(failed[0], written, len(items))
        else:
            replies = await self._transaction(batches)
        out: list[str] = [""] * len(items)
        for (s, idx), ids in zip(groups.items(), replies, strict=True):
            for i, entry_id in zip(idx, ids, strict=True):
                out[i] = s.ref(_s(entry_id))
        return out

    def _partly(self, exc: BaseException, written: int, total: int) -> BackendError:
        err = self._wrap(exc)
        if written:
            return BackendError(
                f"{err} ({written} of {total} jobs were enqueued; the others may not have been)"
            )
        return err

    async def _transaction(self, batches: list[tuple[_Stream, list[Fields]]]) -> list[Any]:
        # EVAL, not EVALSHA: inside MULTI a missing script would fail alone while the rest ran.
        body = self._script("enqueue").script
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        commands += [("EVAL", body, 2, *self._append_args(s, b)) for s, b in batches]
        commands.append(("EXEC",))
        if self.wait_replicas:
            commands.append(("WAIT", self.wait_replicas, self.wait_timeout_ms))
        replies = await self._exchange(self._line("producer"), commands)
        confirmed = replies.pop() if self.wait_replicas else None
        for reply in replies:
            if isinstance(reply, rexc.RedisError):
                raise self._wrap(reply)
        results = replies[-1]
        if results is None:  # pragma: no cover - no WATCH, so EXEC is never aborted
            raise BackendError("the server aborted the enqueue transaction")
        for result in results:
            if isinstance(result, rexc.RedisError):
                raise self._wrap(result)
        if confirmed is not None:
            self._check_wait(confirmed)
        return list(results)

    def _append_args(self, s: _Stream, batch: Sequence[Fields]) -> list[Any]:
        """KEYS and ARGV of enqueue.lua: jobs, stats; pairs per job, then each job's fields."""
        args: list[Any] = [s.jobs, s.stats, len(batch[0])]
        for fields in batch:
            for kv in fields.items():
                args += kv
        return args

    def _waited(self, replies: list[Any]) -> None:
        """Take the WAIT reply off the end of ``replies`` and check it, unless none of the
        commands ran (all MOVED or NOSCRIPT, so they go again with a WAIT of their own; after a
        failover the node may even be a replica now, which refuses WAIT)."""
        confirmed = replies.pop()
        if any(not (_moved(r) or isinstance(r, rexc.NoScriptError)) for r in replies):
            self._check_wait(confirmed)

    def _check_wait(self, reply: Any) -> None:
        if isinstance(reply, BaseException):
            raise self._wrap(reply)
        if int(reply) < self.wait_replicas:
            raise BackendError(
                f"enqueued, but only {int(reply)} of {self.wait_replicas} replicas confirmed it "
                f"within {self.wait_timeout_ms} ms: it may be lost if the master fails now"
            )

    # consuming ----------------------------------------------------------------------------

    def _read_plan(
        self, types: Sequence[str], count: int
    ) -> tuple[list[tuple[list[_Stream], int]], bool]:
        """What to read: groups of streams with the COUNT for each stream of the group, never
        more than ``count`` in all; and whether some partition was left out.

        ``count`` is shared among the types, and a partitioned type's share among its
        partitions, the remainders going to a few of them in turn (:func:`split_count`). With
        fewer than one per partition, a window of partitions gets one each, and the window moves
        on at each read. One XREADGROUP reads one group (on a cluster, the groups are also per
        slot).
        """
        groups: dict[tuple[int, int], list[_Stream]] = {}
        partial = False
        for t, share in zip(types, self._split(count, types, ""), strict=True):
            streams = self.streams(t)
            partial = partial or share < len(streams)
            for s, n in zip(streams, self._split(share, streams, t), strict=True):
                if n:
                    groups.setdefault((s.slot if self.cluster else 0, n), []).append(s)
        return [(group, n) for (_, n), group in groups.items()], partial

    def _split(self, count: int, among: Sequence[Any], key: str) -> list[int]:
        """:func:`split_count` over ``among``, the remainder moving on at each call for ``key``
        (``""``: the types of a read; a type: its partitions)."""
        if len(among) == 1:
            return [count]
        at = self._rotation.get(key, 0)
        self._rotation[key] = (at + count % len(among)) % len(among)
        return split_count(count, len(among), at)

    async def read(
        self, types: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """XREADGROUP ``>`` over all types at once, asking for at most ``count`` entries in all."""
        # A BLOCK as long as the socket timeout would make every idle read look like a dead
        # server; half of it leaves room for the round trip.
        block_ms = max(1, min(block_ms, int(self.socket_timeout * 500)))
        await self._fresh(types)
        plan, partial = self._read_plan(types, count)
        if not plan:  # nothing asked for
            return []
        if partial:
            # Partitions outside this read's window are not watched: look again soon.
            block_ms = min(block_ms, _PARTIAL_BLOCK_MS)
        if len(plan) == 1:
            ((streams, per),) = plan
            work = [(streams[0].jobs, self._xreadgroup(streams, consumer, per, block_ms))]
            replies = await self._fan("reader", work)
            return await self._delivered(list(zip(plan, replies, strict=True)))
        # Several reads: look at all of them at once; only when all are empty, block.
        found = await self._delivered(await self._read_now(plan, consumer))
        if found:
            return found
        if not self.cluster:
            # One blocking XREADGROUP over every stream: it answers with the stream that gets an
            # entry first, at most the smallest share of it.
            streams = [s for group, _ in plan for s in group]
            per = min(share for _, share in plan)
            work = [(streams[0].jobs, self._xreadgroup(streams, consumer, per, block_ms))]
            (reply,) = await self._fan("reader", work)
            return await self._delivered([((streams, per), reply)])
        # A cluster: block on each slot, and unblock the others as soon as one answers.
        return await self._delivered(await self._block_on(plan, consumer, block_ms))

    async def _read_now(
        self, plan: list[tuple[list[_Stream], int]], consumer: str
    ) -> list[tuple[tuple[list[_Stream], int], Any]]:
        work = [(g[0].jobs, self._xreadgroup(g, consumer, per, 0)) for g, per in plan]
        return list(zip(plan, await self._fan("reader", work, whole=True), strict=True))

    async def ack_and_read(
        self, acks: Mapping[str, Sequence[str]], types: Sequence[str], consumer: str, count: int
    ) -> AckedRead:
        """:meth:`ack` per type, then a :meth:`read` that does not block: one round trip per
        node."""
        await self._fresh(types)
        owners: list[tuple[str, _Stream, _Located]] = []
        work: list[tuple[str, tuple[Any, ...]]] = []
        lost: dict[str, list[str]] = {}
        for t, refs in acks.items():
            located = self._locate(t, refs)
            if located.bad:
                lost[t] = list(located.bad)
            for s, ids in located.items():
                owners.append((t, s, located))
                work.append(self._ack_work(s, consumer, ids))
        plan, _ = self._read_plan(types, count)
        work += [(g[0].jobs, self._xreadgroup(g, consumer, per, 0)) for g, per in plan]
        replies = await self._fan("reader", work, whole=True)
        # The read's entries are ours (in the PEL) whatever happened to the acks: keep them.
        deliveries = await self._delivered(list(zip(plan, replies[len(owners) :], strict=True)))
        failed: dict[str, str] = {}
        for (t, s, located), answer in zip(owners, replies, strict=False):
            if isinstance(answer, BaseException):
                failed[t] = str(self._wrap(answer))
            else:
                lost.setdefault(t, []).extend(located.ref(s, _s(x)) for x in answer)
        return AckedRead(lost, failed, deliveries)

    def _ack_work(
        self, s: _Stream, consumer: str, ids: Sequence[str]
    ) -> tuple[str, tuple[Any, ...]]:
        """The ``ack.lua`` call for ids of one stream, as an item of :meth:`_fan`'s work."""
        sha = self._script("ack").sha
        return s.jobs, ("EVALSHA", sha, 2, s.jobs, s.stats, self.group, consumer, *ids)

    def _xreadgroup(
        self, streams: Sequence[_Stream], consumer: str, count: int, block_ms: int
    ) -> tuple[Any, ...]:
        block = ("BLOCK", block_ms) if block_ms > 0 else ()
        return (
            "XREADGROUP", "GROUP", self.group, consumer, "COUNT", count, *block,
            "STREAMS", *(s.jobs for s in streams), *(">" for _ in streams),
        )  # fmt: skip

    async def _delivered(
        self, reads: Sequence[tuple[tuple[list[_Stream], int], Any]]
    ) -> list[Delivery]:
        """Deliveries from XREADGROUP replies (RESP2 list or RESP3 map of stream -> entries)."""
        out: list[Delivery] = []
        errors: list[BaseException] = []
        for (streams, _), reply in reads:
            if isinstance(reply, BaseException):
                if isinstance(reply, rexc.ResponseError) and "NOGROUP" in str(reply):
                    # The server lost the group (restart without persistence): recreate it;
                    # the next read gets what is there.
                    await self.ensure_groups(sorted({s.type for s in streams}))
                elif not _moved(reply):  # MOVED: nothing read; the next read asks the owner
                    errors.append(reply)
                continue
            if not reply:
                continue
            by_key = {s.jobs.encode(): s for s in streams}
            for key, entries in reply.items() if isinstance(reply, dict) else reply:
                s = by_key[key]
                t, ref = s.type, (None if s.part is None else s.ref)
                for entry_id, flat in entries:
                    ident = entry_id.decode()
                    out.append(
                        Delivery(
                            t, ident if ref is None else ref(ident), _pairs(flat) if flat else {}, 1
                        )
                    )
        if errors and not out:
            # What other nodes delivered is ours now: return it; the failing node's error
            # comes back on the next read.
            raise self._wrap(errors[0])
        return out

    # connections --------------------------------------------------------------------------

    def _line(self, purpose: str, node: Any = None) -> _Line:
        key = (purpose, node.name if node is not None else "")
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line()
        return line

    async def _fan(
        self,
        purpose: str,
        work: Sequence[tuple[str, tuple[Any, ...]]],
        *,
        wait: int = 0,
        whole: bool = False,
        again: int = _ROUNDS,
    ) -> list[Any]:
        """Send each command to the server (on a cluster: the node owning its key's slot) and
        return the replies in order; an error reply, or the error of a node that could not be
        reached, comes back in its place. One exchange per node, all nodes at once.

        A script the server lost (NOSCRIPT) is loaded and its command sent again; on a cluster,
        commands answered MOVED (nothing ran) go again to the new owner, ASK to the node it
        names (after ASKING, for that command only), TRYAGAIN after a pause that doubles. At
        most ``again`` times: after a failover the new owner may answer NOSCRIPT in turn. With
        ``wait``, a WAIT for that many replicas follows each node's commands. Without
        ``whole``, an error reaching a node raises.
        """
        await self._connect()
        if not self.cluster:
            commands = [c for _, c in work]
            if wait:
                commands.append(("WAIT", wait, self.wait_timeout_ms))
            try:
                replies: list[Any] = await self._exchange(self._line(purpose), commands)
            except BackendError as exc:
                if not whole:
                    raise
                return [exc] * len(work)
            if wait:
                self._waited(replies)
            return await self._again(purpose, work, replies, wait, again)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        try:
            for i, (key, _) in enumerate(work):
                node = self._r.get_node_from_key(key)
                by_node.setdefault(node.name, (node, []))[1].append(i)
        except _ERRORS as exc:
            self._stale = True
            raise self._wrap(exc) from exc

        async def one(node: Any, idx: list[int]) -> list[Any]:
            commands = [work[i][1] for i in idx]
            if wait:
                commands.append(("WAIT", wait, self.wait_timeout_ms))
            replies = await self._exchange(self._line(purpose, node), commands, node)
            if wait:
                self._waited(replies)
            return replies

        answers = await asyncio.gather(
            *(one(node, idx) for node, idx in by_node.values()), return_exceptions=True
        )
        replies = [None] * len(work)
        for (_, idx), answer in zip(by_node.values(), answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                if not whole:
                    raise self._wrap(answer)
                answer = [answer] * len(idx)
            for i, reply in zip(idx, answer, strict=True):
                replies[i] = reply
        return await self._again(purpose, work, replies, wait, again)

    async def _again(
        self,
        purpose: str,
        work: Sequence[tuple[str, tuple[Any, ...]]],
        replies: list[Any],
        wait: int,
        again: int,
    ) -> list[Any]:
        """Send again the commands answered NOSCRIPT, MOVED, ASK or TRYAGAIN (see :meth:`_fan`)."""
        cluster = self.cluster  # one server answering MOVED is a cluster: see _wrap
        redo = [
            i
            for i, r in enumerate(replies)
            if isinstance(r, rexc.NoScriptError) or (cluster and _moved(r))
        ]
        if not redo or again <= 0:
            return replies
        if any(isinstance(replies[i], rexc.MovedError) for i in redo):
            self._stale = True
        if any(isinstance(replies[i], rexc.TryAgainError) for i in redo):
            # A migration has moved some of the keys a script names but not all: soon it has.
            await asyncio.sleep(min(_TRYAGAIN_S * 2 ** (_ROUNDS - again), _TRYAGAIN_MAX_S))
        if any(isinstance(replies[i], rexc.NoScriptError) for i in redo):
            await self._load_scripts()
        asked = [i for i in redo if _asked(replies[i])]
        rest = [i for i in redo if not _asked(replies[i])]
        if rest:
            second = await self._fan(
                purpose, [work[i] for i in rest], wait=wait, whole=True, again=again - 1
            )
            for i, reply in zip(rest, second, strict=True):
                replies[i] = reply
        if asked:
            sub = [work[i] for i in asked]
            answers = await self._ask(purpose, sub, [replies[i] for i in asked], wait)
            answers = await self._again(purpose, sub, answers, wait, again - 1)
            for i, reply in zip(asked, answers, strict=True):
                replies[i] = reply
        return replies

    async def _load_scripts(self) -> None:
        """Load the scripts again on the server, on a cluster on every master (a restart or a
        failover lost them). A master that cannot be reached is skipped: its own commands fail
        by themselves, and the others' go through."""
        commands = [("SCRIPT", "LOAD", script.script) for script in self._scripts.values()]
        nodes: list[Any] = list(self._r.get_primaries()) if self.cluster else [None]
        await asyncio.gather(
            *(self._exchange(self._line("control", n), commands, n) for n in nodes),
            return_exceptions=True,
        )

    async def _ask(
        self,
        purpose: str,
        work: Sequence[tuple[str, tuple[Any, ...]]],
        asks: Sequence[rexc.AskError],
        wait: int,
    ) -> list[Any]:
        """Send each command to the node its ASK names, each after an ASKING (which lets the
        node importing a slot answer for that one command), one exchange per node."""
        replies: list[Any] = list(asks)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, ask in enumerate(asks):
            node = self._r.get_node(host=ask.host, port=ask.port)
            if node is None:  # a node this client does not know yet: learn the slots again
                self._stale = True
                continue
            by_node.setdefault(node.name, (node, []))[1].append(i)

        async def one(node: Any, idx: list[int]) -> list[Any]:
            commands = [c for i in idx for c in (("ASKING",), work[i][1])]
            if wait:
                commands.append(("WAIT", wait, self.wait_timeout_ms))
            answers = await self._exchange(self._line(purpose, node), commands, node)
            confirmed = answers.pop() if wait else None
            answers = answers[1::2]
            if wait and any(not _moved(r) for r in answers):
                self._check_wait(confirmed)
            return answers

        found = await asyncio.gather(
            *(one(node, idx) for node, idx in by_node.values()), return_exceptions=True
        )
        for (_, idx), answer in zip(by_node.values(), found, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer
            for n, i in enumerate(idx):
                replies[i] = answer if isinstance(answer, BaseException) else answer[n]
        return replies

    async def _exchange(
        self, line: _Line, commands: list[tuple[Any, ...]], node: Any = None
    ) -> list[Any]:
        """Send ``commands`` in one write and read their replies, unreshaped (an error reply
        comes back as its exception, in its place).

        The hot paths (the worker's reads and acks, enqueues) skip redis-py's per-command
        machinery here: each holds one connection (``line``, of the pool, or of the cluster
        ``node``; a blocking XREADGROUP holds its connection anyway), and takes another one when
        its own is busy.
        """
        conn, dedicated = await self._acquire(line, node)
        try:
            return await self._send(conn, commands)
        except _ERRORS as exc:
            if self.cluster and isinstance(exc, rexc.ConnectionError | rexc.TimeoutError):
                self._stale = True  # the node may be gone: learn the slots again
            raise self._wrap(exc) from exc
        finally:
            await self._release(line, node, conn, dedicated)

    async def _acquire(self, line: _Line, node: Any) -> tuple[Any, bool]:
        dedicated = not line.busy
        try:
            if dedicated:
                line.busy = True
                if line.conn is not None and line.node is not node:
                    # The cluster client learned the slots again and has a new object for this
                    # node: hand the old connection back to the old one, which closes it.
                    line.node.release(line.conn)
                    line.conn = None
                if line.conn is None:
                    line.conn = await self._new_connection(node)
                    line.node = node
                conn = line.conn
                if node is not None and conn.should_reconnect():
                    await conn.disconnect()  # marked by the cluster client at a topology change
                if conn.is_connected and await conn.can_read():
                    # Data or EOF on a connection that sat idle between calls: the server closed
                    # it (a restart, a client kill, an idle timeout). Start afresh, not fail.
                    await conn.disconnect(nowait=True)
            else:
                conn = await self._new_connection(node)
        except (rexc.RedisError, OSError) as exc:
            if dedicated:
                line.busy = False
            if self.cluster:
                self._stale = True
            raise self._wrap(exc) from exc
        return conn, dedicated

    async def _new_connection(self, node: Any) -> Any:
        if node is None:
            return await self._r.connection_pool.get_connection()
        return node.acquire_connection()

    async def _release(self, line: _Line, node: Any, conn: Any, dedicated: bool) -> None:
        if dedicated:
            line.busy = False
            if line.gone and line.conn is not None:  # dropped while this call used it
                conn, line.conn = line.conn, None
                await conn.disconnect(nowait=True)
        elif node is None:
            await self._r.connection_pool.release(conn)
        else:
            node.release(conn)

    @staticmethod
    async def _send(
        conn: Any, commands: list[tuple[Any, ...]], first: _Blocked | None = None
    ) -> list[Any]:
        try:
            await _write(conn, _pack(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except rexc.ResponseError as exc:
                    replies.append(exc)
                if first is not None and not first.known.is_set():
                    first.client_id = replies[0] if isinstance(replies[0], int) else None
                    first.known.set()
            return replies
        except BaseException:
            # Replies left unread would be taken as the answers to the next commands.
            await conn.disconnect(nowait=True)
            raise

    async def _unblock(self, task: asyncio.Future[Any], node: Any, client_id: int) -> None:
        """End a blocking read early. Its XREADGROUP went out with the CLIENT ID that told us
        ``client_id``, but may not have reached the server yet: then CLIENT UNBLOCK answers 0,
        and goes again until it ends the read or the read ends by itself."""
        unblock = [("CLIENT", "UNBLOCK", client_id)]
        while not task.done():
            try:
                (n,) = await self._exchange(self._line("control", node), unblock, node)
            except BackendError:
                return  # the read ends at its own BLOCK timeout instead
            if n == 1:
                return
            await asyncio.wait({task}, timeout=0.002)

    async def _block_on(
        self, plan: list[tuple[list[_Stream], int]], consumer: str, block_ms: int
    ) -> list[tuple[tuple[list[_Stream], int], Any]]:
        """A blocking XREADGROUP per slot, each on its own connection to its node, all at once.

        When the first answers, the others are unblocked (CLIENT UNBLOCK: they answer as if
        their time ran out, or with what they had already read), so nothing read is dropped.
        """
        await self._connect()
        try:
            nodes = [self._r.get_node_from_key(g[0].jobs) for g, _ in plan]
        except _ERRORS as exc:
            self._stale = True
            raise self._wrap(exc) from exc
        boxes = [_Blocked() for _ in plan]

        # One line per blocking read of a slot (two groups of one slot block side by side).
        nth = [sum(g[0].slot == plan[i][0][0].slot for g, _ in plan[:i]) for i in range(len(plan))]

        async def one(i: int) -> Any:
            group, per = plan[i]
            line = self._line(f"block:{group[0].slot}:{nth[i]}", nodes[i])
            command = self._xreadgroup(group, consumer, per, block_ms)
            conn, dedicated = await self._acquire(line, nodes[i])
            try:
                _, reply = await self._send(conn, [("CLIENT", "ID"), command], boxes[i])
                return reply
            except _ERRORS as exc:
                self._stale = True
                raise self._wrap(exc) from exc
            finally:
                boxes[i].known.set()
                await self._release(line, nodes[i], conn, dedicated)

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(plan))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task, box, node in zip(tasks, boxes, nodes, strict=True):
                if not task.done():
                    await box.known.wait()
                    if box.client_id is not None:
                        await self._unblock(task, node, box.client_id)
            replies = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply
        return list(zip(plan, replies, strict=True))

    # recovery and outcomes ----------------------------------------------------------------

    async def claim_idle(
        self, type: str, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """XAUTOCLAIM with the delivery counts of what it claimed.

        On a partitioned type one call goes on from partition to partition until it has
        claimed ``count`` or seen every partition once; the cursor (``P/ID``) says where the
        next call resumes.
        """
        await self._fresh([type])
        streams = self.streams(type)
        if len(streams) == 1:
            return await self._claim(streams[0], consumer, min_idle_ms, count, cursor)
        if "@" in cursor:  # an entry id: resume from that entry
            p, at = _partitions.split(cursor, len(streams))
        else:
            head, _, at = cursor.rpartition("/")
            p = int(head) if head.isdigit() and int(head) < len(streams) else 0
        deliveries: list[Delivery] = []
        deleted: list[str] = []
        for _ in streams:
            got = await self._claim(streams[p], consumer, min_idle_ms, count - len(deliveries), at)
            deliveries += got.deliveries
            deleted += got.deleted
            if got.cursor != "0-0":
                return Claimed(f"{p}/{got.cursor}", deliveries, deleted)
            p, at = (p + 1) % len(streams), "0-0"
            if len(deliveries) >= count:
                break
        return Claimed(f"{p}/0-0", deliveries, deleted)

    async def _claim(
        self, s: _Stream, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        await self._connect()
        try:
            nxt, entries, deleted, counts = await self._script("claim")(
                keys=[s.jobs], args=[self.group, consumer, min_idle_ms, cursor, count]
            )
        except rexc.ResponseError as exc:
            if "NOGROUP" in str(exc):
                await self.ensure_groups([s.type])
                return Claimed("0-0", [], [])
            raise self._wrap(exc) from exc
        except _ERRORS as exc:
            raise self._wrap(exc) from exc
        deliveries = [
            Delivery(s.type, s.ref(_s(e[0])), _pairs(e[1]), int(n))
            for e, n in zip(entries, counts, strict=True)
        ]
        return Claimed(_s(nxt), deliveries, [s.ref(_s(d)) for d in deleted])

    async def claim(
        self, type: str, consumer: str, entry_ids: Sequence[str], min_idle_ms: int
    ) -> Claimed:
        """XCLAIM the given entries idle at least ``min_idle_ms`` (a due retry, by id), with
        their delivery counts: one ``claim_ids.lua`` call per stream."""
        deliveries: list[Delivery] = []
        deleted: list[str] = []
        located = self._locate(type, entry_ids)
        for s, ids in located.items():
            if not ids:
                continue
            entries, gone, counts = await self._call(
                "claim_ids", [s.jobs], [self.group, consumer, min_idle_ms, *ids]
            )
            deliveries += (
                Delivery(s.type, located.ref(s, _s(e[0])), _pairs(e[1]), int(n))
                for e, n in zip(entries, counts, strict=True)
            )
            deleted += (located.ref(s, _s(d)) for d in gone)
        return Claimed("0-0", deliveries, deleted)

    async def ack(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Ack + delete owned entries, one script call per stream (all in one exchange per
        node); returns the ids owned by others."""
        located = self._locate(type, entry_ids)
        streams = [(s, ids) for s, ids in located.items() if ids]
        work = [self._ack_work(s, consumer, ids) for s, ids in streams]
        lost = list(located.bad)
        for (s, _), gone in zip(streams, await self._fan("acker", work), strict=True):
            if isinstance(gone, BaseException):
                raise self._wrap(gone)
            lost += (located.ref(s, _s(x)) for x in gone)
        return lost

    async def refresh(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Lease heartbeat: one script call per stream; returns the ids lost.

        Every stream is refreshed even when one fails (a broken partition must not cost the
        others their leases); the failures are raised together afterwards.
        """
        located = self._locate(type, entry_ids)
        lost = list(located.bad)
        failed: list[str] = []
        streams = [(s, ids) for s, ids in located.items() if ids]
        for s, ids in streams:
            try:
                gone = await self._call("refresh", [s.jobs], [self.group, consumer, *ids])
            except BackendError as exc:
                failed.append(f"{s.jobs}: {exc}")
                continue
            lost += (located.ref(s, _s(x)) for x in gone)
        if failed:
            raise BackendError(
                f"lease refresh failed on {len(failed)} of {len(streams)} streams of {type!r} "
                f"(the others were refreshed): {'; '.join(failed)}"
            )
        return lost

    async def retry_later(self, type: str, consumer: str, entry_id: str, idle_ms: int) -> bool:
        """Leave a failed entry in the PEL with a chosen idle time (its backoff)."""
        located = self._locate(type, [entry_id])
        if located.bad:
            return False  # no entry of this type has that id: nobody owns it
        ((s, (plain,)),) = located.items()
        n = await self._call(
            "release", [s.jobs, s.stats], [self.group, consumer, idle_ms, 1, plain]
        )
        return int(n) == 1

    async def release(
        self, type: str, consumer: str, entry_ids: Sequence[str], idle_ms: int
    ) -> None:
        """Make owned entries claimable by others now, the interrupted delivery not counted
        (shutdown with unfinished jobs): one ``handback.lua`` call per stream."""
        for s, ids in self._locate(type, entry_ids).items():
            if ids:
                await self._call("handback", [s.jobs], [self.group, consumer, idle_ms, *ids])

    async def dead_letter(
        self, type: str, consumer: str, entry_id: str, letter: DeadLetter, max_dead: int
    ) -> bool:
        """Move an owned entry to the dead stream, atomically."""
        located = self._locate(type, [entry_id])
        if located.bad:
            return False  # no entry of this type has that id: nobody owns it
        ((s, (plain,)),) = located.items()
        meta = {
            "reason": letter.reason,
            "error": letter.error,
            "deliveries": str(letter.deliveries),
            "entry_id": entry_id,
            "dead_at": f"{time.time():.3f}",
        }
        n = await self._call(
            "dead",
            [s.jobs, s.dead, s.stats],
            [
                self.group,
                consumer,
                plain,
                max_dead,
                1 if letter.failed else 0,
                *[x for kv in meta.items() for x in kv],
            ],
        )
        return int(n) == 1

    async def types(self) -> list[str]:
        """SCAN for ``{prefix}:{TYPE}:*`` keys (never KEYS: it blocks the server); on a cluster,
        on every master."""
        await self._connect()
        found: set[str] = set()
        pattern = f"{self.prefix}:{{*}}:*"
        start = len(self.prefix) + 2
        try:
            async for key in self._raw.scan_iter(match=pattern, count=1000):
                name = _s(key)
                end = name.find("}:", start)
                if end > 0 and name[end + 2 :] in ("jobs", "dead", "stats"):
                    found.add(_partitions.type_of_tag(name[start:end]))
        except _ERRORS as exc:
            raise self._wrap(exc) from exc
        return sorted(found)

    async def requeue(self, type: str, entry_ids: Sequence[str], min_idle_ms: int) -> list[str]:
        """Move stuck entries to the end of the stream as new ones (one script call each
        stream)."""
        await self._fresh([type])
        moved: list[str] = []
        located = self._located(type, entry_ids)
        for s, ids in located.items():
            if ids:
                pairs = await self._call("requeue", [s.jobs], [self.group, min_idle_ms, *ids])
                moved += (located.ref(s, _s(old)) for old, _new in pairs)
        return moved

    async def remove_consumer(self, type: str, consumer: str, *, hand_over: bool = False) -> bool:
        """XGROUP DELCONSUMER, only when the consumer holds nothing (checked in the script; with
        ``hand_over`` the script first passes what it holds to HANDED_BACK); True when it is
        gone from every stream of the type."""
        await self._fresh([type])
        removed = True
        heir = HANDED_BACK if hand_over else ""
        for s in self.streams(type):
            try:
                n = await self._call("forget", [s.jobs], [self.group, consumer, heir])
            except BackendError as exc:
                if "NOGROUP" in str(exc):
                    removed = False
                    continue
                raise
            removed = removed and int(n) == 1
        return removed

    # inspecting ---------------------------------------------------------------------------

    async def stats(self, type: str) -> RawStats:
        """Lengths, PEL summary, consumers and counters: one pipelined round trip per stream,
        summed over the partitions."""
        await self._fresh([type])
        parts = await asyncio.gather(*(self._stream_stats(s) for s in self.streams(type)))
        if len(parts) == 1:
            return parts[0]
        detail: dict[str, tuple[int, int]] = {}
        counters = dict.fromkeys(COUNTERS, 0)
        for raw in parts:
            for name, (held, idle) in raw.consumers_detail.items():
                before = detail.get(name)
                detail[name] = (
                    (held, idle) if before is None else (before[0] + held, min(before[1], idle))
                )
            for k, v in raw.counters.items():
                counters[k] = counters.get(k, 0) + v
        ages = [r.oldest_pending_age_ms for r in parts if r.oldest_pending_age_ms is not None]
        return RawStats(
            length=sum(r.length for r in parts),
            pending=sum(r.pending for r in parts),
            consumers_detail=detail,
            oldest_pending_age_ms=max(ages) if ages else None,
            dead=sum(r.dead for r in parts),
            counters=counters,
            consumers=len(detail),
        )

    async def _stream_stats(self, s: _Stream) -> RawStats:
        await self._connect()
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.xlen(s.jobs)
                pipe.xlen(s.dead)
                pipe.hgetall(s.stats)
                pipe.execute_command("TIME")
                pipe.execute_command("XPENDING", s.jobs, self.group)
                pipe.execute_command("XINFO", "CONSUMERS", s.jobs, self.group)
                replies = await pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            raise self._wrap(exc) from exc
        for r in replies[:4]:
            if isinstance(r, rexc.RedisError):
                raise self._wrap(r) from r
        length, dead, counters_raw, (sec, usec), summary, consumers = replies
        if isinstance(summary, rexc.ResponseError) and "NOGROUP" in str(summary):
            # No group yet (nothing consumed so far): the PEL is empty, not an error.
            summary, consumers = None, []
        for r in (summary, consumers):
            if isinstance(r, rexc.RedisError):  # refused (an ACL), or anything else: say so
                raise self._wrap(r) from r
        now_ms = int(sec) * 1000 + int(usec) // 1000
        counters = dict.fromkeys(COUNTERS, 0)
        for k, v in counters_raw.items():
            counters[_s(k)] = int(v)
        pending = 0
        oldest: int | None = None
        if summary and int(summary[0]) > 0:
            pending = int(summary[0])
            oldest = _age_ms(_s(summary[1]), now_ms)
        detail: dict[str, tuple[int, int]] = {}
        for c in consumers:
            info = {_s(k): v for k, v in (c.items() if isinstance(c, dict) else _pairs(c).items())}
            detail[_s(info["name"])] = (int(info["pending"]), int(info["idle"]))
        return RawStats(
            length=int(length),
            pending=pending,
            consumers_detail=detail,
            oldest_pending_age_ms=oldest,
            dead=int(dead),
            counters=counters,
            consumers=len(detail),
        )

    async def pending(
        self, type: str, *, consumer: str | None, min_idle_ms: int, limit: int
    ) -> list[PendingEntry]:
        """XPENDING (extended form), optionally for one consumer or entries idle that long;
        oldest entries first, over all partitions."""
        await self._fresh([type])
        out: list[PendingEntry] = []
        for s in self.streams(type):
            args: list[Any] = ["XPENDING", s.jobs, self.group]
            if min_idle_ms > 0:
                args += ["IDLE", min_idle_ms]
            args += ["-", "+", limit]
            if consumer:
                args.append(consumer)
            try:
                rows = await self._raw.execute_command(*args)
            except rexc.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    continue
                raise self._wrap(exc) from exc
            except _ERRORS as exc:
                raise self._wrap(exc) from exc
            out += (PendingEntry(s.ref(_s(r[0])), _s(r[1]), int(r[2]), int(r[3])) for r in rows)
        if len(self.streams(type)) > 1:
            out.sort(key=lambda e: _id_key(e.entry_id))
        return out[:limit]

    async def fetch(self, type: str, entry_ids: Sequence[str]) -> dict[str, Fields]:
        """Fields of live entries (one pipelined XRANGE each)."""
        await self._fresh([type])
        out: dict[str, Fields] = {}
        located = self._located(type, entry_ids)
        for s, ids in located.items():
            if not ids:
                continue
            try:
                async with self._r.pipeline(transaction=False) as pipe:
                    for i in ids:
                        pipe.xrange(s.jobs, i, i)
                    replies = await pipe.execute()
            except _ERRORS as exc:
                raise self._wrap(exc) from exc
            out.update((located.ref(s, i), r[0][1]) for i, r in zip(ids, replies, strict=True) if r)
        return out

    async def dead_list(self, type: str, limit: int) -> list[DeadEntry]:
        """The oldest ``limit`` dead letters (over all partitions)."""
        await self._fresh([type])
        out: list[DeadEntry] = []
        for s in self.streams(type):
            try:
                rows = await self._raw.xrange(s.dead, "-", "+", count=limit)
            except _ERRORS as exc:
                raise self._wrap(exc) from exc
            for dead_id, raw in rows:
                meta = {_s(k): v for k, v in raw.items() if not k.startswith(b"f.")}
                fields = {k[2:]: v for k, v in raw.items() if k.startswith(b"f.")}
                out.append(
                    DeadEntry(
                        dead_id=s.ref(_s(dead_id)),
                        job_id=job_id_of(fields),
                        reason=_s(meta.get("reason", b"")),
                        error=_s(meta.get("error", b"")),
                        deliveries=int(meta.get("deliveries", b"0")),
                        entry_id=_s(meta.get("entry_id", b"")),
                        dead_at=float(meta.get("dead_at", b"0")),
                        fields=fields,
                    )
                )
        if len(self.streams(type)) > 1:
            out.sort(key=lambda d: _id_key(d.dead_id))
        return out[:limit]

    async def dead_retry(self, type: str, dead_ids: Sequence[str]) -> list[str]:
        """Re-drive dead letters as new entries (one script call each); returns the dead ids
        re-driven (not those already gone)."""
        await self._fresh([type])
        out = []
        for s, ids in self._located(type, dead_ids).items():
            for d in ids:
                if await self._call("redrive", [s.jobs, s.dead, s.stats], [d]):
                    out.append(s.ref(d))
        return out

    async def dead_purge(self, type: str) -> int:
        """Drop the dead stream(s); returns how many entries they held."""
        await self._fresh([type])
        n = 0
        for s in self.streams(type):
            n += int(await self._call("purge", [s.dead], []))
        return n

    # workers ------------------------------------------------------------------------------

    def _worker_key(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    async def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Write the worker's record with a TTL and list it in the workers set."""
        await self._connect()
        key = self._worker_key(worker_id)
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=dict(info))
                pipe.pexpire(key, max(1, int(ttl_s * 1000)))
                pipe.sadd(f"{self.prefix}:workers", worker_id)
                await pipe.execute()
        except _ERRORS as exc:
            raise self._wrap(exc) from exc

    async def remove_worker(self, worker_id: str) -> None:
        """Delete the worker's record."""
        await self._connect()
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.delete(self._worker_key(worker_id))
                pipe.srem(f"{self.prefix}:workers", worker_id)
                await pipe.execute()
        except _ERRORS as exc:
            raise self._wrap(exc) from exc

    async def workers(self) -> list[dict[str, str]]:
        """Records of workers whose heartbeat has not expired (expired ones are forgotten)."""
        await self._connect()
        members_key = f"{self.prefix}:workers"
        try:
            ids = sorted(_s(m) for m in await self._raw.smembers(members_key))
            async with self._r.pipeline(transaction=False) as pipe:
                for w in ids:
                    pipe.hgetall(self._worker_key(w))
                records = await pipe.execute()
            out, gone = [], []
            for w, rec in zip(ids, records, strict=True):
                if rec:
                    out.append({"id": w} | {_s(k): _s(v) for k, v in rec.items()})
                else:
                    gone.append(w)
            if gone:
                await self._r.srem(members_key, *gone)
        except _ERRORS as exc:
            raise self._wrap(exc) from exc
        return out

    async def eviction_policy(self) -> str | None:
        """``CONFIG GET maxmemory-policy`` (on a cluster, of every master): the first policy
        other than ``noeviction`` found, else ``noeviction``; None when a server refuses the
        command (an ACL without ``+config|get``, or a managed service that renamed it)."""
        policy = "noeviction"
        for reply in await self._on_masters("CONFIG", "GET", "maxmemory-policy"):
            if isinstance(reply, rexc.ResponseError) or not reply:
                return None
            found = _s(next(iter(reply.values())))
            if found != "noeviction":
                policy = found
        return policy

    async def _on_masters(self, *command: Any) -> list[Any]:
        """One command's reply from the server (on a cluster, from every master), through the
        pool (these are rare calls: no connection is held for them); an error reply comes back
        in its place."""
        await self._connect()
        nodes: list[Any] = list(self._r.get_primaries()) if self.cluster else [None]
        out: list[Any] = []
        for node in nodes:
            where = {} if node is None else {"target_nodes": node}
            try:
                out.append(await self._raw.execute_command(*command, **where))
            except rexc.ResponseError as exc:
                out.append(exc)
            except _ERRORS as exc:
                raise self._wrap(exc) from exc
        return out

    async def _check_version(self) -> None:
        """Refuse a server older than Redis 7.0: recovery (claim.lua) needs the deleted ids
        XAUTOCLAIM lists from 7.0 on. A server that does not say (INFO refused) is trusted."""
        for info in await self._on_masters("INFO", "server"):
            if isinstance(info, dict) and (version := too_old(info.get("redis_version"))):
                raise BackendError(
                    f"Redis at {redact_url(self.url)} is version {version}: streamq needs "
                    "Redis 7.0 or later, or Valkey"
                )
        self._version_checked = True

    async def aclose(self) -> None:
        """Close the connections (the held ones included)."""
        for line in self._lines.values():
            if line.conn is not None and self.cluster:
                await line.conn.disconnect()
        await self._r.aclose()
