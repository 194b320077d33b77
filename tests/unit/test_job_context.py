"""Which steps get a JobContext (decided once, at registration), and what a context's checkpoint
takes: typed, JSON, size-capped."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from streamq import CheckpointError, ConfigError, JobContext, JobType, NonRetryable
from streamq._codec import MAX_CHECKPOINT, CheckpointCodec
from streamq._context import takes_context


@dataclass(frozen=True, slots=True)
class Args:
    """Args of the test types."""

    n: int = 0


@dataclass(frozen=True, slots=True)
class State:
    """A typed checkpoint."""

    ids: tuple[str, ...]
    note: str = ""


async def async_one(job: Any) -> None:
    """An async step with the job only."""


async def async_two(job: Any, ctx: Any) -> None:
    """An async step with the context."""


def sync_one(job: Any) -> None:
    """A sync step with the job only."""


def sync_two(job: Any, ctx: Any) -> None:
    """A sync step with the context."""


def sync_default(job: Any, ctx: Any = None) -> None:
    """A second parameter with a default still names one."""


def sync_star(job: Any, *rest: Any) -> None:
    """``*rest`` alone is not a second parameter."""


def wraps(fn: Any) -> Any:
    """A decorator of the usual shape: ``functools.wraps`` over ``*args, **kwargs``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def bare(fn: Any) -> Any:
    """A decorator without ``functools.wraps``: nothing says what it forwards to."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


class CallWithContext:
    """An object whose ``__call__`` takes the context."""

    def __call__(self, job: Any, ctx: Any) -> None:
        """Run."""

    async def method(self, job: Any, ctx: Any) -> None:
        """A bound method with the context."""


class CallWithJob:
    """An object whose ``__call__`` takes the job only."""

    async def __call__(self, job: Any) -> None:
        """Run."""


async def tagged(tag: str, job: Any, ctx: Any) -> None:
    """A function partials bind the first argument of."""


async def tagged_job_only(tag: str, job: Any) -> None:
    """The same, without the context."""


def test_a_second_positional_parameter_asks_for_the_context() -> None:
    """Async and sync functions, decorated (functools.wraps), partials, callable objects and
    bound methods get the context exactly when they name a second positional parameter."""
    assert not takes_context(async_one)
    assert takes_context(async_two)
    assert not takes_context(sync_one)
    assert takes_context(sync_two)
    assert takes_context(sync_default)
    assert not takes_context(sync_star)
    assert takes_context(wraps(async_two))
    assert not takes_context(wraps(async_one))
    assert takes_context(wraps(wraps(sync_two)))
    assert takes_context(functools.partial(tagged, "t"))
    assert not takes_context(functools.partial(tagged_job_only, "t"))
    assert takes_context(wraps(functools.partial(tagged, "t")))
    assert takes_context(CallWithContext())
    assert takes_context(CallWithContext().method)
    assert not takes_context(CallWithJob())
    assert not takes_context(lambda job: None)
    assert takes_context(lambda job, ctx: None)


def test_what_gives_no_signature_takes_the_job_only() -> None:
    """A decorator without functools.wraps (``*args, **kwargs``) and a callable without a
    signature are called with the job alone, as before contexts existed."""
    assert not takes_context(bare(async_two))
    assert not takes_context(len)  # a builtin: one positional parameter
    assert not takes_context(object())  # not callable: no signature at all


def test_the_job_type_decides_once_per_step() -> None:
    """JobType.with_context holds each step's answer, in order, from registration."""
    jt = JobType("t", Args, (async_one, sync_two, wraps(async_two), functools.partial(tagged, "x")))
    assert jt.with_context == (False, True, True, True)
    assert jt.records_steps
    assert not JobType("one", Args, (async_two,)).records_steps


def context(checkpoint: type[Any] | None = None) -> JobContext[Any]:
    """A context as the worker makes one."""
    return JobContext(
        CheckpointCodec(checkpoint, job_type="t"), job_id="j-1", job_type="t", deliveries=1, steps=3
    )


def test_a_typed_checkpoint_comes_back_as_its_type() -> None:
    """save() of the declared type: the later steps get what decoding its JSON gives (the
    declared type again, a tuple stays a tuple), and the record gets that JSON."""
    ctx = context(State)
    assert ctx.checkpoint is None
    ctx.save(State(ids=("i-1", "i-2")))
    assert ctx.checkpoint == State(ids=("i-1", "i-2"))
    assert isinstance(ctx.checkpoint, State)
    assert ctx.unrecorded() == b'{"ids":["i-1","i-2"],"note":""}'
    ctx.recorded()
    assert ctx.unrecorded() is None


def test_an_untyped_checkpoint_is_plain_json() -> None:
    """Without a checkpoint type any JSON value goes; the later steps get it as JSON decodes
    (a tuple becomes a list)."""
    ctx = context()
    ctx.save({"ids": ("a", "b"), "n": 1})
    assert ctx.checkpoint == {"ids": ["a", "b"], "n": 1}


def test_a_resumed_context_reads_the_stored_checkpoint() -> None:
    """resumed() takes the stored JSON as the checkpoint and the step it starts at; nothing to
    write until a step saves again. A fresh context drops what another run may have stored."""
    ctx = context(State)
    assert ctx.unrecorded() == b""
    ctx.resumed(2, b'{"ids":["x"]}')
    assert (ctx.checkpoint, ctx.first_step, ctx.unrecorded()) == (State(ids=("x",)), 2, None)


def test_a_stored_checkpoint_that_no_longer_decodes_changes_nothing() -> None:
    """A stored checkpoint the type no longer takes raises ValueError and leaves the context as
    it was (the worker then starts the job again at its first step)."""
    ctx = context(State)
    with pytest.raises(ValueError, match="ids"):
        ctx.resumed(2, b'{"other": 1}')
    assert (ctx.checkpoint, ctx.first_step, ctx.unrecorded()) == (None, 0, b"")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"ids": "x" * MAX_CHECKPOINT}, "over the limit of 65536"),
        (object(), "cannot be encoded as JSON"),
        ({"ids": 5}, "does not fit State: checkpoint.ids: Expected `array`, got `int`"),
    ],
    ids=["too large", "not JSON", "wrong type"],
)
def test_a_checkpoint_that_cannot_be_saved_is_a_clear_error(value: Any, message: str) -> None:
    """Too large, not JSON, or not of the declared type: CheckpointError naming the job, a
    NonRetryable (no retry makes it fit); the checkpoint before it stays."""
    ctx = context(State)
    ctx.save(State(ids=("kept",)))
    with pytest.raises(CheckpointError, match=message) as caught:
        ctx.save(value)
    assert isinstance(caught.value, NonRetryable)
    assert (caught.value.job_id, caught.value.job_type) == ("j-1", "t")
    assert ctx.checkpoint == State(ids=("kept",))


def test_a_checkpoint_type_json_cannot_carry_is_refused_at_registration() -> None:
    """A checkpoint type msgspec cannot decode JSON into is a ConfigError when the type is
    built, not a failure of the first job."""
    with pytest.raises(ConfigError, match="checkpoint type"):
        JobType("t", Args, (async_one, async_two), checkpoint=threading.Lock)


def test_cancelled_is_a_flag_nothing_sets_yet() -> None:
    """ctx.cancelled is an Event a sync step can poll; cancellation is not built, so it is
    clear."""
    ctx = context()
    assert isinstance(ctx.cancelled, threading.Event)
    assert not ctx.cancelled.is_set()
    assert "step=0" in repr(ctx)
    assert "j-1" in repr(ctx)
