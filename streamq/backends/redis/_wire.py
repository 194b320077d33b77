"""The wire: the redis-py client, and pipelined exchanges on connections held for the hot paths.

The hot paths (the worker's reads and acks, enqueues) skip redis-py's per-command machinery:
each holds one connection (:class:`HeldConnection`) and sends its commands in one write, packed
by ``hiredis.pack_command``, then reads the replies unreshaped.

This is the one module that reaches into redis-py beyond its documented API, each reach for a
reason named where it is; tested on redis-py 8.0 to 8.2 (pyproject.toml pins ``redis>=8.0,<9``:
raise the bound only after running the suites on the next major; a minor can change these too,
as 8.2 did ``can_read()``):

- the async ``Connection``'s ``_writer`` (:func:`write_now`: the bytes go out before the call
  yields), ``can_read()`` (a held connection the server closed while it sat idle:
  :func:`_closed_while_idle`) and
  ``should_reconnect()`` (marked by the cluster client at a topology change);
- ``ClusterNode.acquire_connection()`` / ``release()`` (from 8.0): a connection of one node
  held across calls;
- ``RedisCluster.nodes_manager`` (``initialize()``, ``nodes_cache``): learning the slots again
  after a failover and dropping connections to nodes that left;
- response callbacks: XPENDING and XINFO CONSUMERS replies are parsed here, not reshaped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from streamq._urls import UNPARSEABLE, redact_url
from streamq.backends.redis._errors import REDIS_ERRORS, backend_error
from streamq.exceptions import BackendError, ConfigError

#: A command as it goes on the wire: its name and arguments (bytes, str, int or float).
Command = tuple[Any, ...]

_pack_command = hiredis.pack_command


def pack(commands: list[Command]) -> bytes:
    """RESP-encode ``commands`` in one buffer.

    ``hiredis.pack_command`` is faster than redis-py's packer and than the hand-written one it
    replaced (benchmarks/test_bench_wire.py; figures: benchmarks/README.md, "The Redis backend").
    """
    if len(commands) == 1:
        return _pack_command(commands[0])  # type: ignore[no-any-return]
    return b"".join([_pack_command(c) for c in commands])


async def write_now(conn: Any, data: bytes) -> None:
    """Send ``data`` on ``conn`` now, before this coroutine yields.

    redis-py's ``send_packed_command`` wraps the write in ``asyncio.wait_for`` when the
    connection has a socket timeout, and on Python 3.11 that runs the write in a new task: it
    goes out only after every task already scheduled has run. The worker wakes its lanes just
    before it sends its next read, so the read would leave only once the lanes had run their
    whole batch, and the server would idle while they ran. Here the bytes go to the transport at
    once (the transport sends what it can straight away); only waiting for a full send buffer to
    drain is bounded by the socket timeout. (redis-py internal: ``Connection._writer``.)
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


def _unreshaped(response: Any, **options: Any) -> Any:
    return response


async def _closed_while_idle(conn: Any) -> bool:
    """Whether a held connection that sat idle has data or EOF waiting: the server closed it.

    (redis-py internal: ``Connection.can_read()``.) Up to redis-py 8.1 it answers True on EOF;
    from 8.2 the hiredis parser raises ``ConnectionError("Connection closed by server.")``
    instead (a reset too), so both mean closed here."""
    try:
        return bool(await conn.can_read())
    except rexc.ConnectionError:
        return True


class HeldConnection:
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


class BlockedRead:
    """A blocking read on its own connection, and that connection's client id once known."""

    __slots__ = ("client_id", "known")

    def __init__(self) -> None:
        self.client_id: int | None = None
        self.known = asyncio.Event()


class Wire:
    """The redis-py client of one backend, and the connections it holds.

    Args:
        url: the backend's URL as given (only its redacted form is ever shown).
        address: the URL without streamq's own options.
        cluster: use the cluster client.
        socket_timeout: seconds before a silent server counts as gone.
    """

    def __init__(self, url: str, address: str, *, cluster: bool, socket_timeout: float) -> None:
        self.cluster = cluster
        #: the URL as errors show it
        self.where = redact_url(url)
        options: dict[str, Any] = {
            "decode_responses": False,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 30,
        }
        try:
            if cluster:
                client: Any = RedisCluster.from_url(address, **options)
            else:
                client = aioredis.Redis.from_url(address, **options)
        except (ValueError, rexc.RedisError) as exc:
            # redis-py's message quotes the part it choked on, which may be the password's.
            why = exc if self.where != UNPARSEABLE else "percent-encode @ : / ? # in the password"
            raise ConfigError(f"invalid Redis URL {self.where!r}: {why}") from None
        # Typed Any: redis-py's annotations assume str replies, and this client is in bytes mode.
        self.client: Any = client
        # redis-py reshapes these replies by command name, and its XPENDING reshaping breaks on
        # the extended form; the backend parses them itself.
        for cmd in ("XPENDING", "XINFO CONSUMERS"):
            client.set_response_callback(cmd, _unreshaped)
        #: connections held for the hot paths, per (purpose, node name: "" off a cluster)
        self.held_connections: dict[tuple[str, str], HeldConnection] = {}
        self._ready = not cluster
        #: the slot table may be out of date (a MOVED, a node gone): learn it before the next call
        self.stale = False

    def backend_error(self, exc: BaseException) -> BackendError:
        """``exc`` as the :class:`BackendError` to raise."""
        return backend_error(exc, self.where, self.cluster)

    async def connect(self) -> None:
        """Learn the cluster's slots (once, and again after a failover moved them)."""
        if self._ready and not self.stale:
            return
        try:
            if not self._ready:
                await self.client.initialize()
                self._ready = True
            else:
                self.stale = False
                await self.client.nodes_manager.initialize()
                await self._drop_departed()
        except REDIS_ERRORS as exc:
            self.stale = self._ready
            raise self.backend_error(exc) from exc

    async def _drop_departed(self) -> None:
        """Close and forget the held connections to nodes no longer in the cluster (a failed
        master replaced by its replica, a node removed): nothing would ever use them again."""
        live = self.client.nodes_manager.nodes_cache
        for key, held in list(self.held_connections.items()):
            if key[1] and key[1] not in live:
                del self.held_connections[key]
                held.gone = True
                if not held.busy and held.conn is not None:
                    conn, held.conn = held.conn, None
                    await conn.disconnect(nowait=True)

    def held(self, purpose: str, node: Any = None) -> HeldConnection:
        """The connection held for ``purpose`` (on a cluster: to ``node``)."""
        key = (purpose, node.name if node is not None else "")
        held = self.held_connections.get(key)
        if held is None:
            held = self.held_connections[key] = HeldConnection()
        return held

    async def exchange(
        self, held: HeldConnection, commands: list[Command], node: Any = None
    ) -> list[Any]:
        """Send ``commands`` in one write and read their replies, unreshaped (an error reply
        comes back as its exception, in its place), on ``held`` (of the pool, or of the cluster
        ``node``), or on another connection when a call is using that one."""
        conn, dedicated = await self.acquire(held, node)
        try:
            return await self.roundtrip(conn, commands)
        except REDIS_ERRORS as exc:
            if self.cluster and isinstance(exc, rexc.ConnectionError | rexc.TimeoutError):
                self.stale = True  # the node may be gone: learn the slots again
            raise self.backend_error(exc) from exc
        finally:
            await self.release(held, node, conn, dedicated)

    async def acquire(self, held: HeldConnection, node: Any) -> tuple[Any, bool]:
        """A connection for one exchange: ``held``'s own (True) unless busy, else another."""
        dedicated = not held.busy
        try:
            if dedicated:
                held.busy = True
                if held.conn is not None and held.node is not node:
                    # The cluster client learned the slots again and has a new object for this
                    # node: hand the old connection back to the old one, which closes it.
                    held.node.release(held.conn)
                    held.conn = None
                if held.conn is None:
                    held.conn = await self._new_connection(node)
                    held.node = node
                conn = held.conn
                if node is not None and conn.should_reconnect():
                    await conn.disconnect()  # marked by the cluster client at a topology change
                if conn.is_connected and await _closed_while_idle(conn):
                    # Data or EOF on a connection that sat idle between calls: the server closed
                    # it (a restart, a client kill, an idle timeout). Start afresh, not fail.
                    await conn.disconnect(nowait=True)
            else:
                conn = await self._new_connection(node)
        except (rexc.RedisError, OSError) as exc:
            if dedicated:
                held.busy = False
            if self.cluster:
                self.stale = True
            raise self.backend_error(exc) from exc
        return conn, dedicated

    async def _new_connection(self, node: Any) -> Any:
        if node is None:
            return await self.client.connection_pool.get_connection()
        return node.acquire_connection()

    async def release(self, held: HeldConnection, node: Any, conn: Any, dedicated: bool) -> None:
        """Give back a connection :meth:`acquire` lent."""
        if dedicated:
            held.busy = False
            if held.gone and held.conn is not None:  # dropped while this call used it
                conn, held.conn = held.conn, None
                await conn.disconnect(nowait=True)
        elif node is None:
            await self.client.connection_pool.release(conn)
        else:
            node.release(conn)

    @staticmethod
    async def roundtrip(
        conn: Any, commands: list[Command], first: BlockedRead | None = None
    ) -> list[Any]:
        """Write ``commands`` on ``conn`` and read one reply each; with ``first``, tell it the
        first reply (a CLIENT ID) as soon as it is in."""
        try:
            await write_now(conn, pack(commands))
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

    async def aclose(self) -> None:
        """Close the connections (the held ones included)."""
        # A copy: a worker still using this backend takes new lines while the close awaits.
        for held in list(self.held_connections.values()):
            if held.conn is not None and self.cluster:
                await held.conn.disconnect()
        await self.client.aclose()
