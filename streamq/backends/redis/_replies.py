"""Small readers of server replies (bytes mode: redis-py hands every string over as bytes)."""

from __future__ import annotations

from collections.abc import Sequence

from streamq.backends._base import Fields


def text(value: bytes | str) -> str:
    """A reply string as ``str``."""
    return value.decode() if isinstance(value, bytes) else value


def as_fields(flat: Sequence[bytes]) -> Fields:
    """A stream entry's flat ``field, value, ...`` list as its fields."""
    if len(flat) == 6:
        # Three fields, as every entry streamq writes has (id, v, job): the dict display is
        # cheaper than the general way (benchmarks/README.md, "The Redis backend").
        k1, v1, k2, v2, k3, v3 = flat
        return {k1: v1, k2: v2, k3: v3}
    it = iter(flat)
    return dict(zip(it, it))  # noqa: B905 - a stream entry always has field/value pairs


def entry_id_order(entry_id: str) -> tuple[int, int]:
    """A sort key for entry ids (``MS-SEQ``, an ``@P`` suffix ignored), as Redis orders them."""
    ms, _, seq = entry_id.partition("@")[0].partition("-")
    return int(ms), int(seq or 0)


def age_ms(entry_id: str, now_ms: int) -> int:
    """How long ago (server time ``now_ms``) the entry was added, from its id."""
    return max(0, now_ms - entry_id_order(entry_id)[0])
