"""Why msgspec: turning a launch job's decoded JSON args into ``LaunchArgs`` with checked types.

Groups:

- ``args -> LaunchArgs``: ``msgspec.convert(raw, type=LaunchArgs)`` (what streamq uses) vs
  pydantic ``TypeAdapter(...).validate_python(raw)``, strict. Pydantic's ``strict=True`` refuses a
  dict outright for a stdlib dataclass ("Input should be an instance of LaunchArgs"), so strict is
  applied field by field: ``_StrictLaunchArgs`` mirrors ``LaunchArgs`` with ``StrictInt`` and
  ``StrictStr``, and is checked below to accept and refuse the same inputs as msgspec. Pydantic's
  lax mode over ``LaunchArgs`` itself is shown too; it accepts ``"3"``, ``3.0`` or ``True`` for an
  ``int``, which is not the type check the design asks for.
- ``encode launch job``: ``streamq._codec.encode`` vs ``orjson.dumps`` of the same body (the floor).
- ``decode launch job``: ``_codec.decode`` + ``_codec.convert_args`` (what a worker does per
  delivery) vs ``orjson.loads`` of the body alone (the floor).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import orjson
import pytest
from pydantic import StrictInt, StrictStr, TypeAdapter, ValidationError
from pytest_benchmark.fixture import BenchmarkFixture

from handlers.launch import LaunchArgs
from streamq import Job, Principal, _codec

ITERATIONS = 2000
ROUNDS = 50

RAW_ARGS: dict[str, Any] = {
    "provider": "aws",
    "reservation_id": 1_234_567,
    "pubkey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    " alice@example.com",
    "amount": 3,
    "instance_type": "t3.small",
    "image_id": "ami-0c55b159cbfafe1f0",
    "region": "eu-central-1",
}
LAUNCH_JOB = Job(
    type="launch",
    args=LaunchArgs(**RAW_ARGS),
    account_id=4_242,
    identity=Principal(account_number="0369233", org_id="3340851", user="alice"),
    request_id="2d8ac5f1-3d1e-4f5f-9a63-1f0b3bc1c0a1",
    id="7f6c0f1e-2b9a-4d7e-8f5e-3c1a2b4d6e8f",
)


@dataclasses.dataclass(frozen=True, slots=True)
class _StrictLaunchArgs:
    """``LaunchArgs`` field for field, strict for pydantic (checked by ``_check_mirror``)."""

    provider: Literal["aws", "azure", "gcp"]
    reservation_id: StrictInt
    pubkey: StrictStr
    amount: StrictInt = 1
    instance_type: StrictStr = "t3.small"
    image_id: StrictStr = "ami-0000000000"
    region: StrictStr = "us-east-1"


_BAD_ARGS = [
    {**RAW_ARGS, "amount": "3"},
    {**RAW_ARGS, "amount": 3.0},
    {**RAW_ARGS, "amount": True},
    {**RAW_ARGS, "provider": "ibm"},
    {**RAW_ARGS, "pubkey": b"ssh-ed25519 AAAA"},
    {k: v for k, v in RAW_ARGS.items() if k != "pubkey"},
]


def _check_mirror(strict: TypeAdapter[_StrictLaunchArgs]) -> None:
    """The pydantic side checks exactly what msgspec checks, or the comparison is not fair."""
    ours = [(f.name, f.default) for f in dataclasses.fields(LaunchArgs)]
    mirror = [(f.name, f.default) for f in dataclasses.fields(_StrictLaunchArgs)]
    assert mirror == ours, "_StrictLaunchArgs no longer mirrors handlers.launch.LaunchArgs"
    for bad in _BAD_ARGS:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, type=LaunchArgs)
        with pytest.raises(ValidationError):
            strict.validate_python(bad)


def _run(
    benchmark: BenchmarkFixture, fn: Callable[[], object], *, unit: str, reference: bool = False
) -> None:
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=2)
    rate = 1 / benchmark.stats.stats.median
    benchmark.extra_info.update(
        ops_per_round=1,
        unit=unit,
        reference=reference,
        rate_per_s=round(rate, 1),
        us_per_op=round(1e6 / rate, 3),
    )


# args dict -> LaunchArgs ------------------------------------------------------------------------


def test_args_msgspec_convert(benchmark: BenchmarkFixture) -> None:
    """msgspec.convert(raw, type=LaunchArgs): strict by default, what streamq uses."""
    benchmark.group = "args -> LaunchArgs"
    assert msgspec.convert(RAW_ARGS, type=LaunchArgs) == LAUNCH_JOB.args
    _run(benchmark, lambda: msgspec.convert(RAW_ARGS, type=LaunchArgs), unit="conversions")


def test_args_pydantic_strict(benchmark: BenchmarkFixture) -> None:
    """pydantic TypeAdapter.validate_python over the strict mirror of LaunchArgs."""
    benchmark.group = "args -> LaunchArgs"
    adapter = TypeAdapter(_StrictLaunchArgs)
    _check_mirror(adapter)
    assert dataclasses.asdict(adapter.validate_python(RAW_ARGS)) == RAW_ARGS
    _run(
        benchmark,
        lambda: adapter.validate_python(RAW_ARGS),
        unit="conversions",
        reference=True,
    )


def test_args_pydantic_lax(benchmark: BenchmarkFixture) -> None:
    """pydantic TypeAdapter(LaunchArgs).validate_python in lax mode (coerces; for context)."""
    benchmark.group = "args -> LaunchArgs"
    adapter = TypeAdapter(LaunchArgs)
    assert adapter.validate_python(RAW_ARGS) == LAUNCH_JOB.args
    _run(benchmark, lambda: adapter.validate_python(RAW_ARGS), unit="conversions")


# the whole envelope -------------------------------------------------------------------------------


def test_encode_streamq(benchmark: BenchmarkFixture) -> None:
    """streamq._codec.encode of a launch job (args already a LaunchArgs, as after enqueue)."""
    benchmark.group = "encode launch job"
    job_id = LAUNCH_JOB.id or ""
    _run(benchmark, lambda: _codec.encode(LAUNCH_JOB, job_id), unit="jobs")


def test_encode_orjson_floor(benchmark: BenchmarkFixture) -> None:
    """Floor: orjson.dumps of the same body as a ready-made dict."""
    benchmark.group = "encode launch job"
    body = orjson.loads(_codec.encode(LAUNCH_JOB, LAUNCH_JOB.id or "")[_codec.F_BODY])
    body["args"] = LAUNCH_JOB.args

    def dumps() -> bytes:
        body["enqueued_at"] = time.time()  # encode stamps it too
        return orjson.dumps(body)

    _run(benchmark, dumps, unit="jobs", reference=True)


def _decode_and_convert(fields: _codec.Fields) -> Any:
    envelope = _codec.decode(fields)
    return _codec.convert_args(
        LaunchArgs, envelope.job.args, job_id=envelope.job.id, job_type=envelope.job.type
    )


def test_decode_streamq(benchmark: BenchmarkFixture) -> None:
    """streamq._codec.decode + convert_args of a launch job: a worker's per-delivery decoding."""
    benchmark.group = "decode launch job"
    fields = _codec.encode(LAUNCH_JOB, LAUNCH_JOB.id or "")
    assert _decode_and_convert(fields) == LAUNCH_JOB.args
    _run(benchmark, lambda: _decode_and_convert(fields), unit="jobs")


def test_decode_orjson_floor(benchmark: BenchmarkFixture) -> None:
    """Floor: orjson.loads of the body alone, no envelope checks and no types."""
    benchmark.group = "decode launch job"
    body = _codec.encode(LAUNCH_JOB, LAUNCH_JOB.id or "")[_codec.F_BODY]
    _run(benchmark, lambda: orjson.loads(body), unit="jobs", reference=True)
