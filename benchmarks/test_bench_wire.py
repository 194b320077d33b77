"""Why ``hiredis.pack_command``: RESP-encoding the read loop's commands (the Redis backend's wire).

The read loop sends, per round trip, an ``EVALSHA`` of ``ack.lua`` with the ids of every job that
finished (up to 256 at c256) and an ``XREADGROUP``. Three packers of the same commands, checked
to produce the same bytes:

- ``home-made``: the RESP writer streamq had before (kept here as the reference);
- ``hiredis``: ``hiredis.pack_command`` per command, joined (what the backend uses:
  ``pack`` in ``streamq/backends/redis/_wire.py``);
- ``redis-py``: the async ``Connection.pack_commands`` redis-py itself sends with.

Groups ``pack ack x256`` and ``pack xreadgroup``; each packer runs twice in the order
home-made, hiredis, redis-py, home-made, hiredis, redis-py (``pass1``/``pass2``), so a drift of
the machine during the run shows as a difference between the passes. No server is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from redis.asyncio.connection import Connection

from streamq.backends.redis._wire import pack

ROUNDS = 200

IDS = [f"17000000{i:05d}-0" for i in range(256)]
ACK = [
    (
        "EVALSHA", "0123456789abcdef0123456789abcdef01234567", 2,
        "streamq:{noop}:jobs", "streamq:{noop}:stats", "workers", "worker-1a2b3c:0", *IDS,
    )
]  # fmt: skip
XREADGROUP = [
    (
        "XREADGROUP", "GROUP", "workers", "worker-1a2b3c:0", "COUNT", 128, "BLOCK", 5000,
        "STREAMS", "streamq:{noop}:jobs", ">",
    )
]  # fmt: skip


def _home_made(commands: Sequence[Sequence[Any]]) -> bytes:
    """The RESP writer streamq used before ``hiredis.pack_command`` (the reference)."""
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


def _hiredis(commands: Sequence[Sequence[Any]]) -> bytes:
    """What the backend's wire does (``_wire.pack``)."""
    return pack(commands)  # type: ignore[arg-type]


_CONNECTION = Connection()


def _redis_py(commands: Sequence[Sequence[Any]]) -> bytes:
    """redis-py's own packer, as its async connection sends a pipeline."""
    return b"".join(_CONNECTION.pack_commands(commands))


PACKERS: dict[str, Callable[[Sequence[Sequence[Any]]], bytes]] = {
    "home-made": _home_made,
    "hiredis": _hiredis,
    "redis-py": _redis_py,
}
CASES = [
    pytest.param(payload, name, id=f"{payload}-{name}-pass{n}")
    for payload in ("ack", "xreadgroup")
    for n in (1, 2)
    for name in PACKERS
]


@pytest.mark.parametrize(("payload", "packer"), CASES)
def test_pack(benchmark: BenchmarkFixture, payload: str, packer: str) -> None:
    """Pack the read loop's commands with one packer (the same bytes as the others)."""
    commands = ACK if payload == "ack" else XREADGROUP
    fn = PACKERS[packer]
    assert fn(commands) == _home_made(commands) == hiredis.pack_command(commands[0])
    benchmark.group = "pack ack x256" if payload == "ack" else "pack xreadgroup"
    iterations = 200 if payload == "ack" else 5000
    benchmark.pedantic(fn, args=(commands,), rounds=ROUNDS, iterations=iterations)
