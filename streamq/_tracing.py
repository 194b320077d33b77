"""Trace context carried inside each job. The only module that imports opentelemetry.

Only the API is used here, so with no SDK configured everything is a cheap no-op.
"""

from __future__ import annotations

from opentelemetry import propagate


def inject() -> dict[str, str]:
    """The current W3C trace context (traceparent, tracestate, baggage) as a carrier dict."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
