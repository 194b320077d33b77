"""How the CLI's processes run: on uvloop's event loop when it is installed, and (a
``streamq consume`` worker) with a garbage-collector policy for a long-lived process.

``pip install 'streamq[speed]'`` installs uvloop; ``STREAMQ_UVLOOP=0`` keeps asyncio's own loop.
The worker logs which one it runs on (``event_loop`` in ``streamq.worker.started``).

The collector: a worker makes and drops a few dozen objects per job (many more with the
OpenTelemetry SDK: each span is a few dozen), so with Python's default thresholds
(700, 10, 10) the youngest generation is collected every few jobs, and each full collection walks
every object the process made at start-up. :func:`tune_gc` freezes the start-up objects
(``gc.freeze()``: never walked again) and collects the youngest generation every 7000
allocations instead of 700 (the older ones keep their ratios). Measured on a traced worker (the
SDK, every span kept): 52 -> 46 us of CPU per job; an untraced one barely changes
(benchmarks/README.md, "Tracing overhead"). ``STREAMQ_GC_TUNE=0`` leaves the collector alone,
and so does a threshold the application set itself (its handlers' import).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when installed and not switched off; else None (asyncio's)."""
    if os.environ.get("STREAMQ_UVLOOP", "1") == "0":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh loop (uvloop's when installed)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


#: The youngest generation's threshold a worker runs with (Python's default: 700).
GC_GEN0 = 7000
_DEFAULT_THRESHOLD = (700, 10, 10)


def tune_gc() -> dict[str, int] | None:
    """Freeze the objects made so far and raise the youngest generation's threshold (see the
    module); what it did (for the log line), or None when it left the collector alone."""
    if os.environ.get("STREAMQ_GC_TUNE", "1") == "0" or gc.get_threshold() != _DEFAULT_THRESHOLD:
        return None
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, *_DEFAULT_THRESHOLD[1:])
    return {"gen0_threshold": GC_GEN0, "frozen_objects": gc.get_freeze_count()}
