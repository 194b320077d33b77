"""Which event loop the CLI and the demo run on: uvloop's when it is installed.

``pip install 'streamq[speed]'`` installs it; ``STREAMQ_UVLOOP=0`` keeps asyncio's own loop.
The worker logs which one it runs on (``event_loop`` in ``streamq.worker.started``).
"""

from __future__ import annotations

import asyncio
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
