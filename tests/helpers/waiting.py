"""Waiting in tests for something to become true, bounded: the one polling loop they share."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    """Poll ``check()`` every 10 ms until it is true (TimeoutError after ``within`` seconds)."""
    async with asyncio.timeout(within):
        while True:
            ok = check()
            if inspect.isawaitable(ok):
                ok = await ok
            if ok:
                return
            await asyncio.sleep(0.01)
