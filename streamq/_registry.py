"""Job types: a name, an args dataclass, and the steps that run in order."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from streamq._codec import CheckpointCodec
from streamq._context import JobContext, takes_context
from streamq._flow import Limit, Rate
from streamq._job import Job
from streamq._schedules import Schedule
from streamq.exceptions import ConfigError, NonRetryable, Retry, UnknownJobTypeError

#: A step: called with the job, or with the job and its :class:`~streamq.JobContext` when it
#: names a second positional parameter (docs/steps.md).
Step = (
    Callable[[Job[Any]], Awaitable[None] | None]
    | Callable[[Job[Any], JobContext[Any]], Awaitable[None] | None]
)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_JOB_TIMEOUT = 30 * 60.0
#: The longest a retry waits by default (the backoff's cap), in seconds.
DEFAULT_RETRY_MAX = 3600.0

ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]


def seconds(value: float | timedelta) -> float:
    """A duration setting given as float seconds or a timedelta, in seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def runs_async(step: object) -> bool:
    """Whether calling ``step`` gives a coroutine to await: an ``async def`` function, also
    seen through ``functools.wraps`` wrappers (``__wrapped__``), ``functools.partial`` and an
    object whose class has an async ``__call__``.

    An object whose class has a sync ``__call__`` is taken at its word even when it has a
    ``__wrapped__`` (asgiref's ``async_to_sync`` is such an object: it must run in a thread).
    A sync step that returns an awaitable anyway is awaited by the runner when it comes back.
    """
    obj = step
    looked_at_call = False
    for _ in range(100):  # a bound on odd chains (inspect.unwrap guards against cycles too)
        if inspect.iscoroutinefunction(obj):
            return True
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif inspect.isfunction(obj) or inspect.ismethod(obj):
            inner = getattr(obj, "__wrapped__", None)
            if inner is None:
                return False
            obj = inner
        elif looked_at_call or inspect.isclass(obj):
            return False
        else:
            # A callable object: what its class's __call__ is (once: a builtin's __call__ is a
            # slot wrapper whose own type has one too).
            looked_at_call = True
            obj = getattr(type(obj), "__call__", None)  # noqa: B004 - the class's, not callable()
            if obj is None:
                return False
    return False


def step_name(step: object) -> str:
    """A step's name for spans and log lines: its ``__name__``, else (a callable object) its
    class's; a partial is named after its function."""
    obj = step
    while isinstance(obj, functools.partial):
        obj = obj.func
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) else type(obj).__name__


def check_type_name(name: str) -> None:
    """A type name becomes part of Redis keys and their hash tag: no braces, no blanks, and
    no ``~`` (it marks a partition's stream)."""
    if not name or any(c in name for c in "{}~ \t\r\n"):
        raise ConfigError(
            f"invalid job type name {name!r}: it must be non-empty, without braces, tildes or "
            "spaces"
        )


@dataclass(frozen=True, slots=True)
class JobType:
    """How one job type runs: its args class and its steps, in order.

    ``timeout`` bounds one delivery (all steps together) and ``max_deliveries`` the deliveries
    before the dead stream; ``retry_base`` and ``retry_max`` shape the backoff between them.
    When None the worker's settings apply.

    The retry policy (docs/retries.md): a failure is retried unless it is a
    :class:`~streamq.exceptions.NonRetryable`, an instance of ``fail_on``, or (when
    ``retry_on`` is given) not an instance of ``retry_on``; those go to the dead stream at once.
    A :class:`~streamq.exceptions.Retry` is always retried.

    A type with several steps records each step done, so a redelivered or retried job resumes
    at the first step not done; ``checkpoint`` is the type of the value its steps save for the
    later ones with ``JobContext.save`` (any JSON value when None). See docs/steps.md.
    """

    name: str
    args: type[Any]
    steps: tuple[Step, ...]
    timeout: float | None = None
    max_deliveries: int | None = None
    retry_base: float | None = None
    retry_max: float | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    fail_on: tuple[type[BaseException], ...] = ()
    checkpoint: type[Any] | None = None
    #: per-key concurrency and rate limits (docs/flow-control.md)
    limit: Limit | None = None
    rate: Rate | None = None
    is_async: tuple[bool, ...] = field(init=False, repr=False)
    step_names: tuple[str, ...] = field(init=False, repr=False)
    #: which steps take a JobContext (a second positional parameter)
    with_context: tuple[bool, ...] = field(init=False, repr=False)
    #: the checkpoint to JSON and back (typed by ``checkpoint``)
    checkpoint_codec: CheckpointCodec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_type_name(self.name)
        if not self.steps:
            raise ConfigError(f"job type {self.name!r} has no steps")
        for i, step in enumerate(self.steps):
            if not callable(step):
                # e.g. register("t", Args, [a, b]): the steps go one by one, not in a list
                raise ConfigError(
                    f"job type {self.name!r}: step {i} is a {type(step).__name__}, not a "
                    "function (give the steps one by one: register(name, args, a, b))"
                )
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"job type {self.name!r}: timeout must be positive")
        for setting in ("retry_base", "retry_max"):
            value = getattr(self, setting)
            if value is not None:
                if isinstance(value, timedelta):
                    value = value.total_seconds()
                if value < 0:
                    raise ConfigError(f"job type {self.name!r}: {setting} must not be negative")
                object.__setattr__(self, setting, float(value))
        if self.retry_on is not None:
            object.__setattr__(self, "retry_on", error_types(self.name, "retry_on", self.retry_on))
        object.__setattr__(self, "fail_on", error_types(self.name, "fail_on", self.fail_on))
        # Decided once here, not per job: which steps are coroutines and which go to threads.
        object.__setattr__(self, "is_async", tuple(runs_async(s) for s in self.steps))
        object.__setattr__(self, "step_names", tuple(step_name(s) for s in self.steps))
        object.__setattr__(self, "with_context", tuple(takes_context(s) for s in self.steps))
        codec = CheckpointCodec(self.checkpoint, job_type=self.name)
        object.__setattr__(self, "checkpoint_codec", codec)
        if self.limit is not None and not isinstance(self.limit, Limit):
            raise ConfigError(f"job type {self.name!r}: limit takes a Limit, not {self.limit!r}")
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise ConfigError(f"job type {self.name!r}: rate takes a Rate, not {self.rate!r}")

    @property
    def records_steps(self) -> bool:
        """Whether its jobs record their step progress: a type with more than one step."""
        return len(self.steps) > 1

    def retries(self, failure: BaseException) -> str | None:
        """None when ``failure`` is to be retried (deliveries left), else why it is not."""
        if isinstance(failure, Retry):
            return None
        if isinstance(failure, NonRetryable):
            return f"{type(failure).__name__} is NonRetryable"
        if self.fail_on and isinstance(failure, self.fail_on):
            return f"{type(failure).__name__} is in fail_on"
        if self.retry_on is not None and not isinstance(failure, self.retry_on):
            return f"{type(failure).__name__} is not in retry_on"
        return None


def error_types(type_name: str, setting: str, value: object) -> tuple[type[BaseException], ...]:
    """``retry_on`` / ``fail_on`` as a tuple of exception classes (one class is accepted)."""
    items = value if isinstance(value, tuple | list) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigError(
                f"job type {type_name!r}: {setting} takes exception classes, not {item!r}"
            )
    return tuple(items)


class Registry:
    """Maps job type names to :class:`JobType`. The worker and the queue look types up here."""

    def __init__(self, types: Iterable[JobType] = ()) -> None:
        self._types: dict[str, JobType] = {}
        self._schedules: dict[str, Schedule] = {}
        for t in types:
            self.add(t)

    def add(self, job_type: JobType) -> JobType:
        """Register a job type; a name may be registered once."""
        if job_type.name in self._types:
            raise ConfigError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type
        return job_type

    def register(
        self,
        name: str,
        args: type[Any],
        *steps: Step,
        timeout: float | timedelta | None = None,
        max_deliveries: int | None = None,
        retry_base: float | timedelta | None = None,
        retry_max: float | timedelta | None = None,
        retry_on: ErrorTypes | None = None,
        fail_on: ErrorTypes = (),
        checkpoint: type[Any] | None = None,
        limit: Limit | None = None,
        rate: Rate | None = None,
    ) -> JobType:
        """Register ``name`` with its args class and one or more steps run in order (the
        settings as :class:`JobType`'s)."""
        return self.add(
            JobType(
                name=name,
                args=args,
                steps=steps,
                timeout=None if timeout is None else seconds(timeout),
                max_deliveries=max_deliveries,
                retry_base=None if retry_base is None else seconds(retry_base),
                retry_max=None if retry_max is None else seconds(retry_max),
                retry_on=None if retry_on is None else error_types(name, "retry_on", retry_on),
                fail_on=error_types(name, "fail_on", fail_on),
                checkpoint=checkpoint,
                limit=limit,
                rate=rate,
            )
        )

    def job(
        self,
        name: str,
        args: type[Any],
        *,
        timeout: float | timedelta | None = None,
        max_deliveries: int | None = None,
        retry_base: float | timedelta | None = None,
        retry_max: float | timedelta | None = None,
        retry_on: ErrorTypes | None = None,
        fail_on: ErrorTypes = (),
        limit: Limit | None = None,
        rate: Rate | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register` for a single-step job type."""

        def decorate(fn: F) -> F:
            self.register(
                name,
                args,
                fn,
                timeout=timeout,
                max_deliveries=max_deliveries,
                retry_base=retry_base,
                retry_max=retry_max,
                retry_on=retry_on,
                fail_on=fail_on,
                limit=limit,
                rate=rate,
            )
            return fn

        return decorate

    def every(
        self,
        interval: float | timedelta,
        type: str,
        *,
        args: Mapping[str, Any] | None = None,
        catch_up: int = 1,
        name: str | None = None,
    ) -> Schedule:
        """Enqueue a ``type`` job with ``args`` every ``interval`` (seconds or a timedelta),
        once per tick however many workers serve the type (see docs/periodic.md)."""
        return self._add_schedule(
            Schedule(
                type,
                "every",
                dict(args or {}),
                interval=seconds(interval),
                catch_up=catch_up,
                name=name or "",
            )
        )

    def cron(
        self,
        expression: str,
        type: str,
        *,
        args: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        catch_up: int = 1,
        name: str | None = None,
    ) -> Schedule:
        """Enqueue a ``type`` job with ``args`` at the times of the cron ``expression`` in
        time zone ``tz``; a bad expression or zone is a ConfigError here."""
        return self._add_schedule(
            Schedule(
                type,
                "cron",
                dict(args or {}),
                expression=expression,
                tz=tz,
                catch_up=catch_up,
                name=name or "",
            )
        )

    def _add_schedule(self, schedule: Schedule) -> Schedule:
        check_type_name(schedule.type)
        if schedule.name in self._schedules:
            raise ConfigError(f"schedule {schedule.name!r} is declared twice")
        self._schedules[schedule.name] = schedule
        return schedule

    def schedules(self, types: Iterable[str] | None = None) -> list[Schedule]:
        """The declared schedules (of ``types`` only, when given), in declaration order."""
        wanted = None if types is None else set(types)
        return [s for s in self._schedules.values() if wanted is None or s.type in wanted]

    def get(self, name: str) -> JobType:
        """The job type called ``name``; UnknownJobTypeError if none is registered."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(
                f"no handler is registered for job type {name!r}", job_type=name
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[JobType]:
        return iter(self._types.values())

    def names(self) -> list[str]:
        """The registered type names, sorted."""
        return sorted(self._types)
