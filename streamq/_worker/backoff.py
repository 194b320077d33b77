"""How long to wait: a failed job before its next delivery, and the worker before calling a
server that failed again. Pure functions."""

from __future__ import annotations

import random


def backoff(deliveries: int, *, base: float, cap: float, jitter: float = 0.1) -> float:
    """Seconds to wait after the ``deliveries``-th delivery failed.

    Doubles with each delivery (``base``, ``2·base``, ``4·base``…) up to ``cap``, with ±``jitter``
    spread so that jobs failing together do not all come back at the same instant. The jitter is
    smaller than the doubling, so the wait still grows with every delivery until the cap.
    """
    raw = base * (2.0 ** max(0, deliveries - 1))
    spread = 1.0 + random.uniform(-jitter, jitter)
    return min(cap, raw * spread)


def error_backoff(failures: int) -> float:
    """Seconds before trying the server again after ``failures`` failed calls in a row."""
    return min(5.0, 0.1 * 2.0 ** min(failures, 6))
