"""``JobContext``: what a running step knows of its delivery, and where it saves a checkpoint.

A step that takes a second positional parameter gets one (:func:`takes_context`, decided once
per step when its job type is built); a step with one parameter is called as before. One context
per delivery, passed to each step of it that takes one, on the loop or in a step thread alike.
See docs/steps.md.
"""

from __future__ import annotations

import inspect
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from streamq._codec import CheckpointCodec

C = TypeVar("C")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def takes_context(step: object) -> bool:
    """Whether ``step`` names a second positional parameter (the context), after the job.

    ``inspect.signature`` sees through ``functools.wraps`` wrappers (``__wrapped__``) and
    ``functools.partial`` (the bound arguments are gone from it), and gives a callable object's
    ``__call__`` without ``self``. ``*args`` alone does not count: a decorator's
    ``wrapper(*args, **kwargs)`` without ``functools.wraps`` passes what it is given to a
    function that may take only the job. A callable without a signature takes only the job.
    """
    try:
        signature = inspect.signature(step)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    named = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    return len(named) >= 2


class JobContext(Generic[C]):
    """What a running step knows of its delivery, and the job's checkpoint.

    Attributes (read them; streamq sets them):
        job_id: the job's id.
        deliveries: this delivery's number (1 for the first; retries and redeliveries go on
            counting).
        step: the index of the running step (0 for the first).
        step_name: its name (a function's ``__name__``, as in spans and log lines).
        steps: how many steps the job type has.
        first_step: the step this delivery started at (more than 0 when it resumed a job whose
            earlier steps were done by an earlier delivery).

    ``checkpoint`` is the value the earlier steps saved (by this delivery or an earlier one),
    None until one did; :meth:`save` replaces it. A checkpoint is recorded with the step that
    saved it, once that step finished (docs/steps.md).

    ``cancelled`` is a :class:`threading.Event` a step may poll (``ctx.cancelled.is_set()``).
    Cancelling a running job is not built yet: nothing sets it, so it stays clear.
    """

    __slots__ = (
        "_codec",
        "_stored",
        "_value",
        "cancelled",
        "deliveries",
        "first_step",
        "job_id",
        "job_type",
        "step",
        "step_name",
        "steps",
    )

    def __init__(
        self, codec: CheckpointCodec, *, job_id: str, job_type: str, deliveries: int, steps: int
    ) -> None:
        self._codec = codec
        self.job_id = job_id
        self.job_type = job_type
        self.deliveries = deliveries
        self.steps = steps
        self.step = 0
        self.step_name = ""
        self.first_step = 0
        self._value: Any = None
        # The checkpoint as JSON, when it changed since the progress was last recorded (or
        # read): what the next record writes. None: the store has what this holds. b"": the
        # store may hold another job run's checkpoint, and this one has none (drop it).
        self._stored: bytes | None = b""
        self.cancelled = threading.Event()

    @property
    def checkpoint(self) -> C | None:
        """The checkpoint the earlier steps saved (typed as the job type's ``checkpoint``), or
        None."""
        return self._value  # type: ignore[no-any-return]

    def save(self, value: C) -> None:
        """Replace the checkpoint with ``value``: the later steps get it as ``checkpoint``, and
        a delivery that resumes the job after this step gets it too (as JSON decoded again).

        Raises CheckpointError (and the step fails with it, not retried) if ``value`` does not
        encode as JSON, does not fit the job type's ``checkpoint`` type, or is larger than
        64 KiB encoded.
        """
        data, self._value = self._codec.encode(value, job_id=self.job_id, job_type=self.job_type)
        self._stored = data

    def resumed(self, done: int, checkpoint: bytes) -> None:
        """(streamq) This delivery starts at step ``done``, with the stored ``checkpoint``."""
        if checkpoint:
            self._value = self._codec.decode(checkpoint)  # first: a ValueError changes nothing
        self.first_step = done
        self._stored = None

    def unrecorded(self) -> bytes | None:
        """(streamq) The checkpoint the next progress record writes (see
        ``Backend.record_progress``): None when the store has it already."""
        return self._stored

    def recorded(self) -> None:
        """(streamq) The progress was recorded: the store has the checkpoint."""
        self._stored = None

    def __repr__(self) -> str:
        return (
            f"JobContext(job_type={self.job_type!r}, job_id={self.job_id!r}, "
            f"step={self.step} ({self.step_name!r}) of {self.steps}, "
            f"deliveries={self.deliveries})"
        )
