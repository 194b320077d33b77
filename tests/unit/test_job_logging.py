"""Log lines about a job: the fields every one carries, and what none may carry."""

from __future__ import annotations

import contextvars
import itertools
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


@dataclass(frozen=True)
class AnyReservation:
    """A reservation id of any JSON type."""

    reservation_id: Any = None


def test_binding_over_another_jobs_fields_leaves_exactly_this_jobs_fields() -> None:
    """A lane starts a job in a context that may hold the previous job's fields; bind_job sets
    only what differs. Whatever the previous job was, the result is this job's fields alone,
    with the trace ids only when this delivery has them."""

    def job(n: int, reservation: Any, *, org: str = "o", request: str | None = None) -> Job[Any]:
        ident = Principal(account_number="an", org_id=org, user="someone")
        args = AnyReservation(reservation)
        return Job(
            type="t", args=args, account_id=1, identity=ident, request_id=request, id=f"j{n}"
        )

    trace = {"trace_id": "a" * 32, "span_id": "b" * 16}
    cases = [
        (job(0, 1), 1, None),
        (job(1, 1), 2, None),  # only the delivery count differs
        (job(2, True), 2, None),  # 1 and True: equal, not the same value
        (job(3, 1.0), 2, trace),
        (job(4, 1.0), 2, None),  # the trace ids go
        (job(5, None, org="p", request="r"), 1, trace),
        (job(6, None, org="p", request="r"), 1, trace | {"span_id": "c" * 16}),
        (job(7, None), 1, None),
    ]
    for (before, before_n, before_trace), (this, n, this_trace) in itertools.pairwise(cases):
        previous = contextvars.Context()
        previous.run(bind_job, before, before_n, "1-0", before_trace)

        def bound(job: Job[Any] = this, n: int = n, ids: Any = this_trace) -> dict[str, Any]:
            bind_job(job, n, "2-0", ids)
            return structlog.contextvars.get_contextvars()

        got = previous.copy().run(bound)
        assert got == job_fields(this, n) | {"entry_id": "2-0"} | (this_trace or {}), this.id
        assert type(got["reservation_id"]) is type(this.args.reservation_id)
