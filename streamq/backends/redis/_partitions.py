"""Where a partitioned type's streams live, and ids that say which one.

A type configured with ``Partitions(n)`` has ``n`` streams. Partition 0 keeps the type's own
hash tag (``{launch}``), so a type that becomes partitioned keeps its existing stream as its
first partition. Partition ``p`` > 0 has the tag ``{launch~p}`` or ``{launch~p.k}``: the first
``k`` whose cluster slot lies near a target: the middle of the next third of the slot space
after partition 0's third for ``p`` = 1, of the one after that for ``p`` = 2, then offsets of a
ninth, a 27th, ... (the base-3 van der Corput sequence). On a cluster of three masters owning
equal ranges of slots, as ``--cluster create`` assigns them, three partitions thus land on three
different masters. A tag depends only on the type and ``p``, never on ``n``: a
type grown from 2 to 3 partitions keeps its first two streams.

Entry ids of a partitioned type carry their partition: ``1700000000000-0@2``. The configuration
itself (:class:`~streamq.Partitions`) is in ``streamq/backends/_partitions.py``.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from streamq.exceptions import ConfigError

#: Separates a type from its partition number in a hash tag; not allowed in type names.
MARK = "~"

_WINDOW = REDIS_CLUSTER_HASH_SLOTS // 108  # how far from its target a partition's slot may be


def _van_der_corput3(p: int) -> float:
    """The base-3 van der Corput sequence: 0, 1/3, 2/3, 1/9, 4/9, 7/9, 2/9, ..."""
    out, scale = 0.0, 1.0
    while p:
        scale /= 3
        p, digit = divmod(p, 3)
        out += digit * scale
    return out


def hash_tag(type: str, p: int) -> str:
    """The hash tag of partition ``p`` of ``type`` (see the module docstring)."""
    if p == 0:
        return type
    slots = REDIS_CLUSTER_HASH_SLOTS
    third = key_slot(type.encode()) * 3 // slots  # partition 0's third of the slot space
    target = round(((third + 0.5) / 3 + _van_der_corput3(p)) % 1.0 * slots) % slots
    k = 0
    while True:
        candidate = f"{type}{MARK}{p}" if k == 0 else f"{type}{MARK}{p}.{k}"
        distance = abs(key_slot(candidate.encode()) - target)
        if min(distance, slots - distance) <= _WINDOW:
            return candidate
        k += 1


def type_of_tag(name: str) -> str:
    """The job type a hash tag belongs to (``launch~2.17`` -> ``launch``)."""
    return name.split(MARK, 1)[0]


def split_id(ref: str, count: int) -> tuple[int, str]:
    """(partition, stream entry id) of an id of a type with ``count`` partitions.

    An id without ``@P`` is partition 0's: it was delivered (or dead-lettered) before the type
    was partitioned, on the stream that is partition 0 now.
    """
    entry_id, at, p = ref.rpartition("@")
    if not at:
        if _is_entry_id(ref):
            return 0, ref
        entry_id = ref
    if not _is_entry_id(entry_id) or not p.isdigit() or int(p) >= count:
        raise ConfigError(
            f"entry id {ref!r} does not name one of this type's {count} partitions "
            "(expected ID@P, e.g. 1700000000000-0@1)"
        )
    return int(p), entry_id


def _is_entry_id(text: str) -> bool:
    """``MS-SEQ`` (or ``MS``), as Redis writes stream ids."""
    ms, dash, seq = text.partition("-")
    return ms.isdigit() and (seq.isdigit() or not dash)


def key_value(body: bytes, path: str) -> bytes:
    """The value at ``path`` in an encoded job body, as bytes to hash (empty when missing)."""
    try:
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return b""
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


def partition_of_key(value: bytes, count: int) -> int:
    """The partition of a partition key's value (stable across processes and restarts)."""
    return zlib.crc32(value) % count
