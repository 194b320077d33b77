"""What the live charts draw: stats samples per type over the last minutes, kept in memory.

The server samples ``stats`` every refresh interval (``app``'s sampler task); rates are the
counters' differences between neighbouring samples, so a chart is right from the first page
load, not only after the page has watched for a while.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    """One type at one moment: counters and levels, from ``stats --json``."""

    at: float
    processed: int
    failed: int
    waiting: int
    in_flight: int


class History:
    """The samples of the last ``window_s`` seconds, per type.

    Args:
        window_s: how far back the charts go.
        interval_s: how often the sampler adds a sample (to size the buffers).
    """

    def __init__(self, *, window_s: float, interval_s: float) -> None:
        self.window_s = window_s
        self.interval_s = interval_s
        self._size = int(window_s / interval_s) + 2
        self._samples: dict[str, deque[Sample]] = {}
        #: the last sampling error (the server unreachable), None once a sample succeeds again
        self.error: str | None = None

    def add(self, at: float, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add one sample per ``stats --json`` row, taken at ``at`` (Unix seconds)."""
        self.error = None
        for row in rows:
            samples = self._samples.setdefault(row["type"], deque(maxlen=self._size))
            samples.append(
                Sample(at, row["processed"], row["failed"], row["waiting"], row["in_flight"])
            )
        for name in [t for t, s in self._samples.items() if s[-1].at < at - self.window_s]:
            del self._samples[name]  # a type gone from the server for a whole window

    def series(self) -> dict[str, Any]:
        """The charts' data: per type, times and per-second rates and levels (``/api/history``).

        Rates are per interval between a sample and the one before it; a counter that went
        down (the stats hash deleted) counts as zero, not as a negative rate.
        """
        types: dict[str, Any] = {}
        for name, samples in sorted(self._samples.items()):
            out: dict[str, list[float]] = {
                "t": [],
                "processed_per_s": [],
                "failed_per_s": [],
                "waiting": [],
                "in_flight": [],
            }
            for prev, cur in zip(samples, list(samples)[1:], strict=False):
                dt = cur.at - prev.at
                if dt <= 0:
                    continue
                out["t"].append(round(cur.at, 3))
                out["processed_per_s"].append(round(max(0, cur.processed - prev.processed) / dt, 3))
                out["failed_per_s"].append(round(max(0, cur.failed - prev.failed) / dt, 3))
                out["waiting"].append(cur.waiting)
                out["in_flight"].append(cur.in_flight)
            types[name] = out
        return {
            "interval_s": self.interval_s,
            "window_s": self.window_s,
            "error": self.error,
            "types": types,
        }
