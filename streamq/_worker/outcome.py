"""What one delivery came to (:class:`DeliveryOutcome`), and the log fields of a delivery."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from streamq import _codec
from streamq._job import Job
from streamq._logging import job_fields
from streamq.backends._base import DeadLetter, Delivery
from streamq.exceptions import InvalidJobError


class DeliveryOutcome:
    """What one delivery came to (not :class:`streamq.testing.Outcome`, a test helper's result).

    ``done``: ack it. ``retry``: the handler failed (``error``) with deliveries left; it waits
    ``retry_in`` seconds (a step's :class:`~streamq.Retry`) or, when None, its backoff.
    ``dead``: dead-letter it with ``letter`` (poison, a final failure, or too many deliveries).
    ``lost``: the entry is another consumer's now (found between two steps): leave it to that one.
    ``cancelled``: a cancel request stopped it: end it as cancelled (``Backend.end_cancelled``).
    :meth:`log` gives the job's log fields (bound for the rest of the delivery already), for
    lines logged outside it.

    A ``done`` outcome keeps no reference to the job: it waits for its ack, and every object
    kept alive that long is one more for the garbage collector to look at. Most are the shared
    :data:`DONE`.
    """

    __slots__ = ("_extra", "_job", "error", "kind", "letter", "retry_in")

    def __init__(
        self,
        kind: Literal["done", "retry", "dead", "lost", "cancelled"],
        job: Job[Any] | None = None,
        *,
        error: str = "",
        letter: DeadLetter | None = None,
        extra: dict[str, Any] | None = None,
        retry_in: float | None = None,
    ) -> None:
        self.kind = kind
        self.retry_in = retry_in
        self.error = error
        self.letter = letter
        self._job = job
        self._extra = extra

    def log(self, d: Delivery) -> dict[str, Any]:
        """The log fields of this outcome of ``d`` (built when asked: seldom needed)."""
        return log_fields(d, self._job, self._extra)


def log_fields(
    d: Delivery, job: Job[Any] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The log fields of a delivery, for lines logged outside its own context. Without ``job``
    they are read from the entry again (when it decodes)."""
    fields: dict[str, Any] = {"job_type": d.type, "entry_id": d.entry_id}
    if extra:
        fields |= extra
    if job is None:
        with contextlib.suppress(InvalidJobError):
            job = _codec.decode(d.fields).job
    if job is not None:
        fields = job_fields(job, d.deliveries) | fields
    return fields


#: The outcome of most deliveries: done, with no trace ids to log.
DONE = DeliveryOutcome("done")
