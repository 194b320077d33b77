"""The application's job handlers: one module per job type. ``registry`` holds them all.

The wheel installs this package as ``streamq._demo_handlers`` (what ``streamq demo`` runs), not
as a top-level ``handlers``: hence the relative imports.
"""

from __future__ import annotations

from streamq import Registry

from .launch import JOB_TYPE as LAUNCH
from .noop import JOB_TYPE as NOOP

registry = Registry([LAUNCH, NOOP])

__all__ = ["registry"]
