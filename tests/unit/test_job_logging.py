"""Log lines about a job: the fields every one carries, and what none may carry."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import structlog

from streamq import Job, Principal, Registry
from streamq._logging import bind_job, job_fields
from streamq.testing import run_jobs

JOB_FIELDS = {
    "account_id",
    "account_number",
    "org_id",
    "job_id",
    "job_type",
    "request_id",
    "reservation_id",
    "deliveries",
}


@dataclass(frozen=True)
class Args:
    """Has a reservation id, like the launch job."""

    reservation_id: int


async def test_job_log_lines_carry_job_fields_and_never_the_identity() -> None:
    """Every streamq.job.* line has the job's fields; the user of the identity is never logged."""
    registry = Registry()

    def step(job: Job[Any]) -> None:
        structlog.get_logger("app").info("app.step", note="inside a sync step")
        raise RuntimeError("boom")

    registry.register("t", Args, step)
    job = Job(
        type="t",
        args={"reservation_id": 77},
        account_id=5,
        identity=Principal(account_number="acct-42", org_id="org-7", user="very-secret-user"),
        request_id="req-1",
        id="job-1",
    )
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        out = await run_jobs(registry, [job], max_deliveries=2)
    assert out.stats["t"].dead_lettered == 1
    about_job = [e for e in logs if e["event"].startswith(("streamq.job.", "app."))]
    events = {e["event"] for e in about_job}
    assert {"streamq.job.failed", "streamq.job.dead", "streamq.job.redelivered"} <= events
    assert "app.step" in events, "a sync step's own log lines get the job's fields too"
    for e in about_job:
        assert e.keys() >= JOB_FIELDS, e
        assert (e["job_id"], e["account_number"], e["org_id"]) == ("job-1", "acct-42", "org-7")
        assert (e["reservation_id"], e["request_id"], e["account_id"]) == (77, "req-1", 5)
    assert "very-secret-user" not in repr(logs)
    assert "very-secret-user" not in repr(job)


def test_fields_bound_for_a_delivery_are_those_of_job_fields() -> None:
    """bind_job (the worker's unrolled per-delivery binding) and job_fields (the same fields as a
    dict, for lines logged outside the delivery) list the same fields with the same values."""
    job = Job(
        type="t",
        args=Args(reservation_id=9),
        account_id=3,
        identity=Principal(account_number="an", org_id="org", user="someone"),
        request_id="r",
        id="j",
    )

    def bound() -> dict[str, object]:
        bind_job(job, 2, "1-0")
        return structlog.contextvars.get_contextvars()

    assert contextvars.Context().run(bound) == job_fields(job, 2) | {"entry_id": "1-0"}
