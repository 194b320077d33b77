"""Job fields for log lines: bound into structlog's context variables for one delivery.

The library never configures structlog; applications (and the CLI) do.
"""

from __future__ import annotations

from typing import Any

import structlog

from streamq._job import Job

logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("streamq")


def job_fields(job: Job[Any], deliveries: int) -> dict[str, Any]:
    """The fields every log line about ``job`` carries. The identity is never logged whole."""
    return {
        "job_id": job.id,
        "job_type": job.type,
        "account_id": job.account_id,
        "account_number": job.identity.account_number,
        "org_id": job.identity.org_id,
        "request_id": job.request_id,
        "reservation_id": getattr(job.args, "reservation_id", None),
        "deliveries": deliveries,
    }


def bind(fields: dict[str, Any]) -> None:
    """Bind fields for the rest of the current task (each delivery runs in its own task)."""
    structlog.contextvars.bind_contextvars(**fields)
