"""The CLI's event loop: uvloop's when installed, asyncio's with STREAMQ_UVLOOP=0."""

from __future__ import annotations

import asyncio

import pytest

from streamq import _eventloop

uvloop = pytest.importorskip("uvloop")


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMQ_UVLOOP", raising=False)
    assert _eventloop.loop_factory() is uvloop.new_event_loop
    assert _eventloop.run(loop_module()).startswith("uvloop")


def test_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMQ_UVLOOP", "0")
    assert _eventloop.loop_factory() is None
    assert _eventloop.run(loop_module()).startswith("asyncio")
