"""Errors raised by streamq. Every one derives from :class:`StreamqError`.

::

    StreamqError
    ├── ConfigError              a setting, URL or flag that cannot work
    ├── BackendError             the server could not be reached or answered an error
    ├── ServerError              the embedded server binary is missing or would not start
    └── JobError                 about one job; carries job_id and job_type where known
        ├── UnknownJobTypeError  no handler is registered for the type
        ├── InvalidJobError      the envelope cannot be decoded or the args do not fit the type
        ├── JobTooLargeError     the encoded job exceeds the size limit
        ├── JobTimeoutError      a handler ran longer than its job timeout
        └── CheckpointError      a step's checkpoint cannot be saved (also NonRetryable)

Two more are for steps to raise, not raised by streamq: :class:`Retry` (retry this job after a
wait of the step's choosing) and :class:`NonRetryable` (a base for errors that no retry can
mend: the job goes to the dead stream at once). See docs/retries.md.
"""

from __future__ import annotations

from datetime import timedelta


class StreamqError(Exception):
    """Root of every error streamq raises."""


class ConfigError(StreamqError):
    """A setting, URL or flag that cannot work."""


class BackendError(StreamqError):
    """The backend (Redis) could not be reached or answered with an error."""


class ServerError(StreamqError):
    """The embedded server binary could not be found or started."""


class JobError(StreamqError):
    """An error about one job."""

    def __init__(self, message: str, *, job_id: str | None = None, job_type: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.job_type = job_type


class UnknownJobTypeError(JobError):
    """No handler is registered for the job's type."""


class InvalidJobError(JobError):
    """The job's envelope cannot be decoded, or its args do not fit the registered type."""


class JobTooLargeError(JobError):
    """The encoded job is larger than the configured limit."""


class JobTimeoutError(JobError):
    """A handler ran longer than the job timeout of its type."""


class NonRetryable(Exception):
    """A base for errors no retry can mend (a reservation that does not exist, bad input the
    args' types could not catch): a step that raises one sends its job to the dead stream at
    once, with the reason ``not retryable``, whatever deliveries it has left."""


class CheckpointError(JobError, NonRetryable):
    """A step's checkpoint cannot be saved: it does not encode as JSON, does not fit the job
    type's checkpoint type, or is larger than the limit (docs/steps.md). Raised by
    ``JobContext.save`` in the step, so the step fails with it; no retry would make the same
    value fit, so the job goes to the dead stream at once."""


class Retry(Exception):
    """Raised by a step: retry the job after ``after`` (seconds or a timedelta), e.g. a
    provider's Retry-After, instead of the type's backoff. It counts as a delivery toward
    ``max_deliveries`` like any failure, and is retried whatever ``retry_on`` and ``fail_on``
    say; ``after`` is used as given (not capped by ``retry_max``).

    ``raise Retry(after=30) from exc`` keeps the cause; the job's last error is ``reason`` (or
    the cause's, when no reason is given)."""

    def __init__(self, after: float | timedelta | None = None, *, reason: str = "") -> None:
        self.after = None if after is None else _seconds(after)
        if self.after is not None and (self.after != self.after or self.after < 0):
            raise ValueError(f"Retry(after=...) must be a duration of 0 or more, not {after!r}")
        self.reason = reason
        super().__init__(
            reason or (f"retry in {self.after}s" if self.after is not None else "retry asked for")
        )


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
