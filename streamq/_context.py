"""``JobContext``: what a running step knows of its delivery, and where it saves a checkpoint.

A step that takes a second positional parameter gets one (:func:`takes_context`, decided once
per step when its job type is built); a step with one parameter is called as before. One context
per delivery, passed to each step of it that takes one, on the loop or in a step thread alike.
See docs/steps.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

from streamq._job import Job, Principal
from streamq.exceptions import ConfigError

if TYPE_CHECKING:
    from streamq._codec import CheckpointCodec
    from streamq._enqueue import Enqueuer, JobId

C = TypeVar("C")

#: How long a follow-up's derived unique key is kept after the follow-up ended, by default:
#: longer than any redelivery of its parent is likely to come.
CHAIN_UNIQUE_FOR = 24 * 3600.0


class _Derived(enum.Enum):
    DERIVED = "derived"


#: The default ``unique_key`` of :meth:`JobContext.enqueue`: one derived from the parent job's
#: id, the step and the call's place in it (:func:`chain_key`).
DERIVED: Final = _Derived.DERIVED


def chain_key(parent_id: str, step: int, n: int) -> str:
    """The unique key of the ``n``-th follow-up (from 0) with a derived key that step ``step``
    of job ``parent_id`` enqueues: the same on every delivery of the parent, so a redelivered
    parent finds its follow-up already enqueued."""
    return f"chain:{parent_id}:{step}:{n}"


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

    :meth:`enqueue` (or :meth:`enqueue_sync` in a sync step) enqueues a follow-up job that
    inherits this job's ``request_id`` and identity, in a span under the step's, once per step
    and call however often this job is delivered (docs/steps.md, "Chaining").

    ``cancelled`` is a :class:`threading.Event` a step may poll (``ctx.cancelled.is_set()``).
    Cancelling a running job is not built yet: nothing sets it, so it stays clear.
    """

    __slots__ = (
        "_chained",
        "_codec",
        "_enqueuer",
        "_job",
        "_loop",
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
        self,
        codec: CheckpointCodec,
        *,
        job_id: str,
        job_type: str,
        deliveries: int,
        steps: int,
        job: Job[Any] | None = None,
        enqueuer: Enqueuer | None = None,
    ) -> None:
        self._codec = codec
        self._job = job
        self._enqueuer = enqueuer
        self._loop: asyncio.AbstractEventLoop | None = None
        # (step, how many follow-ups with a derived key it enqueued in this delivery): the n
        # of chain_key.
        self._chained = (0, 0)
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

    async def enqueue(
        self,
        job: Job[Any],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | Literal[_Derived.DERIVED] | None = DERIVED,
        unique_for: float | timedelta | None = CHAIN_UNIQUE_FOR,
        priority: str = "default",
    ) -> JobId:
        """Enqueue a follow-up job; returns its id (``duplicate`` True when an earlier delivery
        of this job had enqueued it already).

        The follow-up gets this job's ``request_id`` and ``identity`` where ``job`` has none
        (``request_id`` None, ``identity`` the empty ``Principal()``). By default its unique
        key is :func:`chain_key` (this job's id, the step, and how many follow-ups with a
        derived key this step enqueued before in this delivery), kept ``unique_for`` (24 h)
        after the follow-up ended: a redelivered or retried step enqueues nothing new. Give
        your own ``unique_key``, or None for none (every call enqueues a job; ``unique_for``
        is then ignored). The other arguments are :meth:`Queue.enqueue`'s.

        Raises:
            ConfigError: the context cannot enqueue (one built outside a worker), or what
                :meth:`Queue.enqueue` raises.
        """
        enqueuer, job, unique_key = self._follow_up(job, unique_key)
        return await enqueuer.enqueue(
            job,
            delay=delay,
            at=at,
            expires=expires,
            unique_key=unique_key,
            unique_for=unique_for if unique_key is not None else None,
            priority=priority,
        )

    def enqueue_sync(
        self,
        job: Job[Any],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | Literal[_Derived.DERIVED] | None = DERIVED,
        unique_for: float | timedelta | None = CHAIN_UNIQUE_FOR,
        priority: str = "default",
        timeout: float | None = 30.0,
    ) -> JobId:
        """:meth:`enqueue` from a sync step (in its step thread): the enqueue runs on the
        worker's event loop, and this waits for it (at most ``timeout`` seconds).

        Raises:
            ConfigError: called on the event loop itself (an async step awaits
                :meth:`enqueue` instead), or no loop is known.
        """
        loop = self._loop
        if loop is None:
            raise ConfigError("this JobContext has no worker event loop to enqueue on")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise ConfigError("enqueue_sync would block the event loop: await ctx.enqueue(...)")
        # The thread's context (the step's span among it) goes with the call to the loop:
        # run_coroutine_threadsafe schedules it with a copy of this thread's context.
        future = asyncio.run_coroutine_threadsafe(
            self.enqueue(
                job,
                delay=delay,
                at=at,
                expires=expires,
                unique_key=unique_key,
                unique_for=unique_for,
                priority=priority,
            ),
            loop,
        )
        return future.result(timeout)

    def _follow_up(
        self, job: Job[Any], unique_key: str | Literal[_Derived.DERIVED] | None
    ) -> tuple[Enqueuer, Job[Any], str | None]:
        """The enqueuer, the follow-up with what it inherits, and its unique key."""
        if self._enqueuer is None or self._job is None:
            raise ConfigError("this JobContext cannot enqueue (it was not made by a worker)")
        parent = self._job
        changes: dict[str, Any] = {}
        if job.request_id is None and parent.request_id is not None:
            changes["request_id"] = parent.request_id
        if job.identity == _NOBODY and parent.identity != _NOBODY:
            changes["identity"] = parent.identity
        if changes:
            job = dataclasses.replace(job, **changes)
        if unique_key is DERIVED:
            step, n = self._chained
            if step != self.step:
                step, n = self.step, 0
            self._chained = (step, n + 1)
            unique_key = chain_key(self.job_id, step, n)
        return self._enqueuer, job, unique_key

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """(streamq) The worker's event loop, where :meth:`enqueue_sync` sends its enqueue."""
        self._loop = loop

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


_NOBODY = Principal()
