"""The Redis backend: one stream per job type, read through one consumer group.

The only module that imports ``redis``. Keys of one type share the type's hash tag
(``{prefix}:{TYPE}:jobs``) so every multi-key script stays in one cluster slot. Multi-step
changes run as the Lua scripts beside this file, one round trip each.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.commands.core import AsyncScript

from streamq._codec import job_id_of
from streamq.backends._base import (
    COUNTERS,
    AckedRead,
    Claimed,
    DeadEntry,
    DeadLetter,
    Delivery,
    Fields,
    PendingEntry,
    RawStats,
)
from streamq.exceptions import BackendError, ConfigError

_OWNED = resources.files(__package__).joinpath("owned.lua").read_text()


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to log or print)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Sequence[bytes]) -> Fields:
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


def _as_is(response: Any, **options: Any) -> Any:
    return response


def _age_ms(entry_id: str, now_ms: int) -> int:
    return max(0, now_ms - int(entry_id.split("-", 1)[0]))


class _Line:
    """A pool connection held for one hot path, and whether a call is using it."""

    __slots__ = ("busy", "conn")

    def __init__(self) -> None:
        self.conn: Any = None
        self.busy = False


class RedisBackend:
    """Backend on a Redis (or Valkey) server.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: first part of every key.
        group: consumer group name.
        socket_timeout: seconds before a silent server counts as gone (reads block less).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "streamq",
        group: str = "workers",
        socket_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.group = group
        self.socket_timeout = socket_timeout
        try:
            self._r: aioredis.Redis = aioredis.Redis.from_url(
                url,
                decode_responses=False,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
        # redis-py's annotations assume str replies; in bytes mode some calls go through this
        # untyped alias rather than a cast at every call site.
        self._raw: Any = self._r
        # redis-py reshapes these replies by command name, and its XPENDING reshaping breaks on
        # the extended form; this module parses them itself.
        for cmd in ("XPENDING", "XINFO CONSUMERS"):
            self._r.response_callbacks[cmd] = _as_is
        self._scripts: dict[str, AsyncScript] = {}
        # Connections held for the hot paths (see _exchange): the read loop's, the producers'.
        self._reader = _Line()
        self._producer = _Line()
        self._known_groups: set[str] = set()

    def __repr__(self) -> str:
        return f"RedisBackend({redact_url(self.url)!r}, prefix={self.prefix!r})"

    # keys ---------------------------------------------------------------------------------

    def jobs_key(self, type: str) -> str:
        """The stream of live jobs of ``type``."""
        return f"{self.prefix}:{{{type}}}:jobs"

    def dead_key(self, type: str) -> str:
        """The dead-letter stream of ``type``."""
        return f"{self.prefix}:{{{type}}}:dead"

    def stats_key(self, type: str) -> str:
        """The counters hash of ``type``."""
        return f"{self.prefix}:{{{type}}}:stats"

    def _script(self, name: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            body = resources.files(__package__).joinpath(f"{name}.lua").read_text()
            if "owned_split" in body:
                body = _OWNED + body
            script = self._scripts[name] = self._r.register_script(body)
        return script

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._script(name)(keys=keys, args=args)
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc

    def _wrap(self, exc: rexc.RedisError) -> BackendError:
        where = redact_url(self.url)
        if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
            return BackendError(f"Redis at {where} refused the credentials: {exc}")
        if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError):
            return BackendError(f"cannot reach Redis at {where}: {exc}")
        return BackendError(f"Redis at {where} answered an error: {exc}")

    # groups -------------------------------------------------------------------------------

    async def ensure_groups(self, types: Sequence[str]) -> None:
        """Create each stream and its group from id 0 (so no earlier job is skipped)."""
        for t in types:
            try:
                await self._r.xgroup_create(self.jobs_key(t), self.group, id="0", mkstream=True)
            except rexc.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise self._wrap(exc) from exc
            except rexc.RedisError as exc:
                raise self._wrap(exc) from exc
            self._known_groups.add(t)

    # producing ----------------------------------------------------------------------------

    async def enqueue(self, type: str, fields: Fields) -> str:
        """Append one job (XADD + counter in one script call)."""
        (entry_id,) = await self._append_one_type(type, [fields])
        return entry_id

    async def enqueue_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """Append many jobs in one round trip, all or none, and count them.

        Jobs of one type go in one script call (atomic, like every script); jobs of several
        types in one MULTI/EXEC of a script call per type.
        """
        if not items:
            return []
        by_type: dict[str, list[Fields]] = {}
        for t, fields in items:
            by_type.setdefault(t, []).append(fields)
        if len(by_type) == 1:
            ((t, batch),) = by_type.items()
            return await self._append_one_type(t, batch)
        # EVAL, not EVALSHA: inside MULTI a missing script would fail alone while the rest ran.
        body = self._script("enqueue").script
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        commands += [("EVAL", body, 2, *self._append_args(t, b)) for t, b in by_type.items()]
        commands.append(("EXEC",))
        replies = await self._exchange(self._producer, commands)
        for reply in replies:
            if isinstance(reply, rexc.RedisError):
                raise self._wrap(reply)
        results = replies[-1]
        if results is None:  # pragma: no cover - no WATCH, so EXEC is never aborted
            raise BackendError("the server aborted the enqueue transaction")
        for result in results:
            if isinstance(result, rexc.RedisError):
                raise self._wrap(result)
        ids_by_type = {t: iter(r) for t, r in zip(by_type, results, strict=True)}
        return [_s(next(ids_by_type[t])) for t, _ in items]

    def _append_args(self, type: str, batch: Sequence[Fields]) -> list[Any]:
        """KEYS and ARGV of enqueue.lua: jobs, stats; pairs per job, then each job's fields."""
        args: list[Any] = [self.jobs_key(type), self.stats_key(type), len(batch[0])]
        for fields in batch:
            for kv in fields.items():
                args += kv
        return args

    async def _append_one_type(self, type: str, batch: Sequence[Fields]) -> list[str]:
        if not batch[0] or any(len(f) != len(batch[0]) for f in batch):
            raise ConfigError("every job of one enqueue must have the same, non-empty fields")
        script = self._script("enqueue")
        args = self._append_args(type, batch)
        (reply,) = await self._exchange(self._producer, [("EVALSHA", script.sha, 2, *args)])
        if isinstance(reply, rexc.NoScriptError):
            # The server lost its scripts (a restart); nothing was written. The script call
            # loads it again, as ack_and_read's fallback to ack does.
            reply = await self._call("enqueue", args[:2], args[2:])
        elif isinstance(reply, rexc.RedisError):
            raise self._wrap(reply)
        return [_s(x) for x in reply]

    # consuming ----------------------------------------------------------------------------

    async def read(
        self, types: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """XREADGROUP ``>`` over all types at once, asking for at most ``count`` entries."""
        # A BLOCK as long as the socket timeout would make every idle read look like a dead
        # server; half of it leaves room for the round trip.
        block_ms = max(1, min(block_ms, int(self.socket_timeout * 500)))
        (reply,) = await self._exchange(
            self._reader, [self._xreadgroup(types, consumer, count, block_ms)]
        )
        return await self._delivered(reply, types)

    async def ack_and_read(
        self, acks: Mapping[str, Sequence[str]], types: Sequence[str], consumer: str, count: int
    ) -> AckedRead:
        """:meth:`ack` per type, then a :meth:`read` that does not block: one round trip."""
        ack = self._script("ack")
        commands: list[tuple[Any, ...]] = [
            ("EVALSHA", ack.sha, 2, self.jobs_key(t), self.stats_key(t), self.group, consumer, *ids)
            for t, ids in acks.items()
        ]
        commands.append(self._xreadgroup(types, consumer, count, 0))
        *acked, reply = await self._exchange(self._reader, commands)
        # The read's entries are ours (in the PEL) whatever happened to the acks: keep them.
        deliveries = await self._delivered(reply, types)
        lost: dict[str, list[str]] = {}
        failed: dict[str, str] = {}
        for (t, ids), answer in zip(acks.items(), acked, strict=True):
            try:
                if isinstance(answer, rexc.NoScriptError):
                    # The server lost its scripts (a restart): this call loads it again.
                    lost[t] = await self.ack(t, consumer, ids)
                elif isinstance(answer, rexc.RedisError):
                    raise self._wrap(answer)
                else:
                    lost[t] = [_s(x) for x in answer]
            except BackendError as exc:
                failed[t] = str(exc)
        return AckedRead(lost, failed, deliveries)

    def _xreadgroup(
        self, types: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> tuple[Any, ...]:
        block = ("BLOCK", block_ms) if block_ms > 0 else ()
        keys = [self.jobs_key(t) for t in types]
        return (
            "XREADGROUP", "GROUP", self.group, consumer, "COUNT", count, *block,
            "STREAMS", *keys, *(">" for _ in keys),
        )  # fmt: skip

    async def _delivered(self, reply: Any, types: Sequence[str]) -> list[Delivery]:
        """Deliveries from an XREADGROUP reply (RESP2 list or RESP3 map of stream -> entries)."""
        if isinstance(reply, rexc.ResponseError):
            if "NOGROUP" not in str(reply):
                raise self._wrap(reply)
            # The server lost the group (restart without persistence): recreate it; the next
            # read gets what is there.
            await self.ensure_groups(types)
            return []
        if not reply:
            return []
        by_key = {self.jobs_key(t).encode(): t for t in types}
        out: list[Delivery] = []
        for key, entries in reply.items() if isinstance(reply, dict) else reply:
            t = by_key[key]
            for entry_id, flat in entries:
                out.append(Delivery(t, entry_id.decode(), _pairs(flat) if flat else {}, 1))
        return out

    async def _exchange(self, line: _Line, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies, unreshaped (an error reply
        comes back as its exception, in its place).

        The hot paths (the worker's reads and acks, enqueues) skip redis-py's per-command
        machinery here: each holds one connection of the pool (``line``; a blocking XREADGROUP
        holds its connection anyway), and takes a pooled one when its own is busy.
        """
        pool: Any = self._r.connection_pool  # get_connection() is untyped in redis-py
        dedicated = not line.busy
        try:
            if dedicated:
                line.busy = True
                if line.conn is None:
                    line.conn = await pool.get_connection()
                conn = line.conn
            else:
                conn = await pool.get_connection()
        except rexc.RedisError as exc:
            if dedicated:
                line.busy = False
            raise self._wrap(exc) from exc
        try:
            if dedicated and conn.is_connected and await conn.can_read():
                # Data or EOF on a connection that sat idle between calls: the server closed it
                # (a restart, a client kill, an idle timeout). Start afresh rather than fail.
                await conn.disconnect(nowait=True)
            return await self._send(conn, commands)
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        finally:
            if dedicated:
                line.busy = False
            else:
                await pool.release(conn)

    @staticmethod
    async def _send(conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        try:
            await conn.send_packed_command(_pack(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except rexc.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            # Replies left unread would be taken as the answers to the next commands.
            await conn.disconnect(nowait=True)
            raise

    async def claim_idle(
        self, type: str, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """XAUTOCLAIM with the delivery counts of what it claimed."""
        try:
            nxt, entries, deleted, counts = await self._script("claim")(
                keys=[self.jobs_key(type)],
                args=[self.group, consumer, min_idle_ms, cursor, count],
            )
        except rexc.ResponseError as exc:
            if "NOGROUP" in str(exc):
                await self.ensure_groups([type])
                return Claimed("0-0", [], [])
            raise self._wrap(exc) from exc
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        deliveries = [
            Delivery(type, _s(e[0]), _pairs(e[1]), int(n))
            for e, n in zip(entries, counts, strict=True)
        ]
        return Claimed(_s(nxt), deliveries, [_s(d) for d in deleted])

    async def ack(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Ack + delete owned entries in one script call; returns the ids owned by others."""
        if not entry_ids:
            return []
        lost = await self._call(
            "ack", [self.jobs_key(type), self.stats_key(type)], [self.group, consumer, *entry_ids]
        )
        return [_s(x) for x in lost]

    async def refresh(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Lease heartbeat for all given ids in one script call; returns the ids lost."""
        if not entry_ids:
            return []
        lost = await self._call(
            "refresh", [self.jobs_key(type)], [self.group, consumer, *entry_ids]
        )
        return [_s(x) for x in lost]

    async def retry_later(self, type: str, consumer: str, entry_id: str, idle_ms: int) -> bool:
        """Leave a failed entry in the PEL with a chosen idle time (its backoff)."""
        n = await self._call(
            "release",
            [self.jobs_key(type), self.stats_key(type)],
            [self.group, consumer, idle_ms, 1, entry_id],
        )
        return int(n) == 1

    async def release(
        self, type: str, consumer: str, entry_ids: Sequence[str], idle_ms: int
    ) -> None:
        """Make owned entries claimable by others now (shutdown with unfinished jobs)."""
        if entry_ids:
            await self._call(
                "release",
                [self.jobs_key(type), self.stats_key(type)],
                [self.group, consumer, idle_ms, 0, *entry_ids],
            )

    async def dead_letter(
        self, type: str, consumer: str, entry_id: str, letter: DeadLetter, max_dead: int
    ) -> bool:
        """Move an owned entry to the dead stream, atomically."""
        meta = {
            "reason": letter.reason,
            "error": letter.error,
            "deliveries": str(letter.deliveries),
            "entry_id": entry_id,
            "dead_at": f"{time.time():.3f}",
        }
        n = await self._call(
            "dead",
            [self.jobs_key(type), self.dead_key(type), self.stats_key(type)],
            [
                self.group,
                consumer,
                entry_id,
                max_dead,
                1 if letter.failed else 0,
                *[x for kv in meta.items() for x in kv],
            ],
        )
        return int(n) == 1

    async def types(self) -> list[str]:
        """SCAN for ``{prefix}:{TYPE}:*`` keys (never KEYS: it blocks the server)."""
        found: set[str] = set()
        pattern = f"{self.prefix}:{{*}}:*"
        start = len(self.prefix) + 2
        try:
            async for key in self._raw.scan_iter(match=pattern, count=1000):
                name = _s(key)
                end = name.find("}:", start)
                if end > 0 and name[end + 2 :] in ("jobs", "dead", "stats"):
                    found.add(name[start:end])
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        return sorted(found)

    async def requeue(self, type: str, entry_ids: Sequence[str], min_idle_ms: int) -> list[str]:
        """Move stuck entries to the end of the stream as new ones (one script call)."""
        if not entry_ids:
            return []
        pairs = await self._call(
            "requeue", [self.jobs_key(type)], [self.group, min_idle_ms, *entry_ids]
        )
        return [_s(old) for old, _new in pairs]

    async def remove_consumer(self, type: str, consumer: str) -> bool:
        """XGROUP DELCONSUMER, only when the consumer holds nothing (checked in the script)."""
        try:
            n = await self._call("forget", [self.jobs_key(type)], [self.group, consumer])
        except BackendError as exc:
            if "NOGROUP" in str(exc):
                return False
            raise
        return int(n) == 1

    # inspecting ---------------------------------------------------------------------------

    async def stats(self, type: str) -> RawStats:
        """One pipelined round trip: lengths, PEL summary, consumers, counters, server time."""
        jobs = self.jobs_key(type)
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.xlen(jobs)
                pipe.xlen(self.dead_key(type))
                pipe.hgetall(self.stats_key(type))
                pipe.time()
                pipe.execute_command("XPENDING", jobs, self.group)
                pipe.execute_command("XINFO", "CONSUMERS", jobs, self.group)
                replies = await pipe.execute(raise_on_error=False)
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        for r in replies[:4]:
            if isinstance(r, rexc.RedisError):
                raise self._wrap(r) from r
        length, dead, counters_raw, (sec, usec), summary, consumers = replies
        # No group yet (nothing consumed so far): the PEL is empty, not an error.
        if isinstance(summary, rexc.ResponseError):
            summary, consumers = None, []
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
        """XPENDING (extended form), optionally for one consumer or entries idle that long."""
        args: list[Any] = ["XPENDING", self.jobs_key(type), self.group]
        if min_idle_ms > 0:
            args += ["IDLE", min_idle_ms]
        args += ["-", "+", limit]
        if consumer:
            args.append(consumer)
        try:
            rows = await self._raw.execute_command(*args)
        except rexc.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise self._wrap(exc) from exc
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        return [PendingEntry(_s(r[0]), _s(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def fetch(self, type: str, entry_ids: Sequence[str]) -> dict[str, Fields]:
        """Fields of live entries (one pipelined XRANGE each)."""
        if not entry_ids:
            return {}
        key = self.jobs_key(type)
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for i in entry_ids:
                    pipe.xrange(key, i, i)
                replies = await pipe.execute()
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        return {i: r[0][1] for i, r in zip(entry_ids, replies, strict=True) if r}

    async def dead_list(self, type: str, limit: int) -> list[DeadEntry]:
        """The oldest ``limit`` dead letters."""
        try:
            rows = await self._raw.xrange(self.dead_key(type), "-", "+", count=limit)
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        out = []
        for dead_id, raw in rows:
            meta = {_s(k): v for k, v in raw.items() if not k.startswith(b"f.")}
            fields = {k[2:]: v for k, v in raw.items() if k.startswith(b"f.")}
            out.append(
                DeadEntry(
                    dead_id=_s(dead_id),
                    job_id=job_id_of(fields),
                    reason=_s(meta.get("reason", b"")),
                    error=_s(meta.get("error", b"")),
                    deliveries=int(meta.get("deliveries", b"0")),
                    entry_id=_s(meta.get("entry_id", b"")),
                    dead_at=float(meta.get("dead_at", b"0")),
                    fields=fields,
                )
            )
        return out

    async def dead_retry(self, type: str, dead_ids: Sequence[str]) -> list[str]:
        """Re-drive dead letters as new entries (one script call each)."""
        keys = [self.jobs_key(type), self.dead_key(type), self.stats_key(type)]
        out = []
        for d in dead_ids:
            new_id = await self._call("redrive", keys, [d])
            if new_id:
                out.append(_s(new_id))
        return out

    async def dead_purge(self, type: str) -> int:
        """Drop the dead stream."""
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.xlen(self.dead_key(type))
                pipe.delete(self.dead_key(type))
                n, _ = await pipe.execute()
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        return int(n)

    # workers ------------------------------------------------------------------------------

    def _worker_key(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    async def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Write the worker's record with a TTL and list it in the workers set."""
        key = self._worker_key(worker_id)
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=dict(info))  # type: ignore[arg-type]
                pipe.pexpire(key, max(1, int(ttl_s * 1000)))
                pipe.sadd(f"{self.prefix}:workers", worker_id)
                await pipe.execute()
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc

    async def remove_worker(self, worker_id: str) -> None:
        """Delete the worker's record."""
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.delete(self._worker_key(worker_id))
                pipe.srem(f"{self.prefix}:workers", worker_id)
                await pipe.execute()
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc

    async def workers(self) -> list[dict[str, str]]:
        """Records of workers whose heartbeat has not expired (expired ones are forgotten)."""
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
        except rexc.RedisError as exc:
            raise self._wrap(exc) from exc
        return out

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._r.aclose()
