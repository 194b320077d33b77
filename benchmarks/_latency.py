"""Latency samples -> the ``extra_info["latency"]`` entry that ``summarize.py`` reads.

Rates are what most benchmarks here report (``ops_per_round`` over the median round time). A
latency benchmark instead times every operation on its own and stores percentiles: its
pytest-benchmark round is the whole run, whose duration means nothing by itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from pytest_benchmark.fixture import BenchmarkFixture

#: The percentiles stored, by name (nearest-rank: the value below which that share lies).
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}


def percentile(ordered: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending sequence (no interpolation: a measured value)."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def record(
    benchmark: BenchmarkFixture,
    samples_ns: Sequence[int],
    *,
    what: str,
    reference: bool = False,
    target_p50_at_most: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Store the percentiles (in microseconds) of ``samples_ns`` in ``extra_info["latency"]``.

    ``target_p50_at_most`` is a bound on the p50 as a multiple of the group's reference p50
    (lower is better for a latency, so the target is a ceiling). ``extra`` goes in as is (the
    achieved rate of a paced run, for instance). Returns the entry.
    """
    if not samples_ns:
        raise ValueError(f"{benchmark.name}: no latency samples")
    ordered = sorted(samples_ns)
    entry: dict[str, Any] = {
        "what": what,
        "samples": len(ordered),
        **{name: round(percentile(ordered, p) / 1e3, 1) for name, p in PERCENTILES.items()},
        "min": round(ordered[0] / 1e3, 1),
        "max": round(ordered[-1] / 1e3, 1),
        "mean": round(sum(ordered) / len(ordered) / 1e3, 1),
        "unit": "us",
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        **extra,
    }
    benchmark.extra_info.update(unit="latency", reference=reference, latency=entry)
    if target_p50_at_most is not None:
        benchmark.extra_info["target_p50_at_most"] = target_p50_at_most
    return entry
