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
        └── JobTimeoutError      a handler ran longer than its job timeout
"""

from __future__ import annotations


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
