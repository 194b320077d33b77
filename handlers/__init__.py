"""The application's job handlers: one module per job type. ``registry`` holds them all."""

from __future__ import annotations

from handlers.launch import JOB_TYPE as LAUNCH
from handlers.noop import JOB_TYPE as NOOP
from streamq import Registry

registry = Registry([LAUNCH, NOOP])

__all__ = ["registry"]
