"""The job and the caller's identity: frozen value objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

ArgsT = TypeVar("ArgsT")


def mask(value: str) -> str:
    """Show only enough of a secret-ish value to tell two apart in a log: ``jo***``."""
    if not value:
        return ""
    return value[:2] + "***"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who asked for the job. Travels with the job; never logged or printed whole."""

    account_number: str = ""
    org_id: str = ""
    type: str = "User"
    user: str = ""

    def __repr__(self) -> str:
        # The user name is personal data: the repr (and so every log of a Job) shows it masked.
        return (
            f"Principal(account_number={self.account_number!r}, org_id={self.org_id!r}, "
            f"type={self.type!r}, user={mask(self.user)!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Job(Generic[ArgsT]):
    """One unit of background work.

    ``id`` is a random UUID; when it is ``None`` the queue sets it at enqueue. ``type`` names the
    job type and so the stream it travels on. ``args`` is an instance of the type's args class
    (a dataclass) or, at enqueue, a mapping that the registry validates into one.
    """

    type: str
    args: ArgsT
    account_id: int = 0
    identity: Principal = field(default_factory=Principal)
    request_id: str | None = None
    id: str | None = None
