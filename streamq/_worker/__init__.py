"""The worker: reads jobs, runs them on lanes, acks them, keeps their leases, recovers the rest.

``streamq.Worker`` is :class:`~streamq._worker.worker.Worker`; the other modules are its parts.
"""

from __future__ import annotations

from streamq._worker.worker import HARD_STOP_CLEANUP, Worker, default_consumer_name

__all__ = ["HARD_STOP_CLEANUP", "Worker", "default_consumer_name"]
