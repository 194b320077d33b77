"""How registration tells async steps from sync ones, and names them."""

from __future__ import annotations

import functools
from typing import Any

from streamq._registry import runs_async, step_name


async def coro_fn(job: Any) -> None:
    """An async step."""


def sync_fn(job: Any) -> None:
    """A sync step."""


def wraps(fn: Any) -> Any:
    """A functools.wraps wrapper that returns what ``fn`` returns."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


class AsyncCall:
    """An object with an async ``__call__``."""

    async def __call__(self, job: Any) -> None:
        """Run."""

    async def method(self, job: Any) -> None:
        """An async method."""


class RunsItself:
    """Like asgiref's ``async_to_sync``: a sync ``__call__`` that runs a coroutine function it
    names in ``__wrapped__``."""

    def __init__(self, fn: Any) -> None:
        self.__wrapped__ = fn

    def __call__(self, job: Any) -> None:
        """Run it to completion (in a thread)."""


def test_async_is_seen_through_wrappers_partials_and_call() -> None:
    """Wrappers, partials (nested either way), async __call__ and bound methods are async."""
    assert runs_async(coro_fn)
    assert runs_async(wraps(coro_fn))
    assert runs_async(wraps(wraps(coro_fn)))
    assert runs_async(functools.partial(coro_fn))
    assert runs_async(functools.partial(wraps(coro_fn)))
    assert runs_async(wraps(functools.partial(coro_fn)))
    assert runs_async(AsyncCall())
    assert runs_async(wraps(AsyncCall()))
    assert runs_async(functools.partial(AsyncCall()))
    assert runs_async(AsyncCall().method)
    assert runs_async(wraps(AsyncCall().method))


def test_sync_callables_stay_sync() -> None:
    """Plain functions, builtins, classes and objects with a sync __call__ (even with a
    ``__wrapped__`` naming a coroutine function) run in threads."""
    assert not runs_async(sync_fn)
    assert not runs_async(wraps(sync_fn))
    assert not runs_async(functools.partial(sync_fn))
    assert not runs_async(print)
    assert not runs_async(AsyncCall)
    assert not runs_async(RunsItself(coro_fn))
    assert not runs_async(lambda job: coro_fn(job))


def test_step_names() -> None:
    """Functions by name, partials by their function, objects by their class."""
    assert step_name(coro_fn) == "coro_fn"
    assert step_name(wraps(coro_fn)) == "coro_fn"
    assert step_name(functools.partial(functools.partial(sync_fn))) == "sync_fn"
    assert step_name(AsyncCall()) == "AsyncCall"
