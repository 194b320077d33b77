"""Partitioned job types, as configured: how many streams one type's jobs spread over, and
which job field keeps jobs of one value together.

Only the configuration lives here (``Partitions``, public as ``streamq.Partitions``, and the
``STREAMQ_PARTITIONS`` form). Where the streams are and how an id names one is the Redis
backend's business: ``streamq/backends/redis/_partitions.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamq.exceptions import ConfigError


@dataclass(frozen=True, slots=True)
class Partitions:
    """How one job type's jobs spread over several streams.

    Args:
        count: how many streams (1: not partitioned).
        key: ``None`` for round robin; else the job field whose value picks the partition, so
            jobs with one value stay on one stream, in order: ``account_id``, or a dotted path
            into the job (``identity.org_id``, ``args.region``).
    """

    count: int
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or not 1 <= self.count <= 1024:
            raise ConfigError(
                f"partitions must be a whole number from 1 to 1024, not {self.count!r}"
            )
        if self.key is not None and not all(self.key.split(".")):
            raise ConfigError(f"invalid partition key {self.key!r}: a field name or dotted path")


def parse_partitions(spec: str) -> dict[str, Partitions]:
    """``launch=3,report=4:account_id`` (the ``STREAMQ_PARTITIONS`` form) as a mapping."""
    out: dict[str, Partitions] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, eq, rest = item.partition("=")
        count, _, key = rest.partition(":")
        if not eq or not name.strip() or not count.strip().isdigit():
            raise ConfigError(
                f"invalid partitions {item!r}: expected TYPE=N or TYPE=N:KEY "
                "(e.g. launch=3:account_id)"
            )
        out[name.strip()] = Partitions(int(count), key.strip() or None)
    return out


def normalize(partitions: Mapping[str, Partitions | int] | None) -> dict[str, Partitions]:
    """Partitions by type, counts given as plain ints accepted; one partition means none."""
    out: dict[str, Partitions] = {}
    for t, p in (partitions or {}).items():
        spec = p if isinstance(p, Partitions) else Partitions(p)
        if spec.count > 1:
            out[t] = spec
    return out
