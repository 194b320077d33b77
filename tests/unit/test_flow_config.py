"""Flow control as a job type declares it (docs/flow-control.md): what ``Limit`` and ``Rate``
accept and refuse, the figures a rate gives the backend, how a job's key value is found
(``streamq._flow.key_value``), and that the registry carries both to the type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest
import structlog

from streamq import ConfigError, Job, JobType, Limit, Principal, Rate, Registry
from streamq._codec import TypedDecoder, encode
from streamq._flow import KEY_CAP, describe, key_of, key_value
from streamq.backends._records import F_BODY


@dataclass(frozen=True)
class Args:
    """A launch's args."""

    provider: str = "aws"
    region: Any = None


async def step(job: Job[Any]) -> None:
    """Does nothing."""


# Limit and Rate: what they refuse -------------------------------------------------------------


@pytest.mark.parametrize(
    ("concurrency", "message"),
    [
        (0, "Limit: concurrency must be at least 1, not 0"),
        (-3, "Limit: concurrency must be at least 1, not -3"),
        (True, "Limit: concurrency must be a whole number, not True"),
        (2.0, "Limit: concurrency must be a whole number, not 2.0"),
        ("2", "Limit: concurrency must be a whole number, not '2'"),
    ],
)
def test_limit_refuses_a_concurrency_that_is_not_a_whole_number_of_at_least_1(
    concurrency: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Limit(key="account_id", concurrency=concurrency)


@pytest.mark.parametrize("key", ["", ".", "args.", ".provider", "args..provider", 7, b"x"])
@pytest.mark.parametrize("owner", ["Limit", "Rate"])
def test_a_bad_key_path_is_refused_with_what_a_key_may_be(owner: str, key: Any) -> None:
    """A key is a field, a dotted path without empty parts, or a function; the error says so."""
    message = (
        f"{owner}: invalid key {key!r}: a job field or dotted path (account_id, args.provider) "
        "or a function of the job"
    )
    make: Any = (
        (lambda: Limit(key=key, concurrency=2)) if owner == "Limit" else lambda: Rate(5, key=key)
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        make()


def test_limit_needs_a_key() -> None:
    with pytest.raises(ConfigError, match=r"^Limit: a key is needed \(for one limit per type"):
        Limit(key=None, concurrency=2)  # type: ignore[arg-type]


def test_good_keys_are_taken() -> None:
    def region(job: Job[Any]) -> object:
        return job.args.region

    assert Limit(key="account_id", concurrency=1).key == "account_id"
    assert Limit(key="identity.org_id", concurrency=3).concurrency == 3
    assert Limit(key=region, concurrency=4).key is region
    assert Rate(5, key="args.provider").key == "args.provider"
    assert Rate(5).key is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "Rate: n must be a whole number of at least 1, not 0"),
        ({"n": -1}, "Rate: n must be a whole number of at least 1, not -1"),
        ({"n": True}, "Rate: n must be a whole number of at least 1, not True"),
        ({"n": 2.5}, "Rate: n must be a whole number of at least 1, not 2.5"),
        ({"n": 5, "burst": 0}, "Rate: burst must be a whole number of at least 1, not 0"),
        ({"n": 5, "burst": False}, "Rate: burst must be a whole number of at least 1, not False"),
        ({"n": 5, "per": 0}, "Rate: per must be a positive duration, not 0"),
        ({"n": 5, "per": -1.0}, "Rate: per must be a positive duration, not -1.0"),
        (
            {"n": 5, "per": timedelta(0)},
            "Rate: per must be a positive duration, not datetime.timedelta(0)",
        ),
        ({"n": 5, "per": True}, "Rate: per must be a positive duration, not True"),
        ({"n": 5, "per": "1s"}, "Rate: per must be a positive duration, not '1s'"),
    ],
)
def test_rate_refuses_bad_figures(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Rate(**kwargs)


# Rate: its figures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "per", "interval", "tolerance"),
    [
        (Rate(5), 1.0, 200.0, 0.0),
        (Rate(5, per=timedelta(seconds=2)), 2.0, 400.0, 0.0),
        (Rate(10, per=timedelta(minutes=1), burst=3), 60.0, 6000.0, 12000.0),
        (Rate(4, per=0.5, burst=4), 0.5, 125.0, 375.0),
        (Rate(3, per=1), 1.0, 1000 / 3, 0.0),
    ],
)
def test_rate_spacing_and_burst_tolerance(
    rate: Rate, per: float, interval: float, tolerance: float
) -> None:
    """``interval_ms`` = per / n (in ms), ``tolerance_ms`` = interval * (burst - 1); ``per`` is
    kept as seconds (a float) whatever it was given as."""
    assert rate.per == per
    assert isinstance(rate.per, float)
    assert rate.interval_ms == pytest.approx(interval)
    assert rate.tolerance_ms == pytest.approx(tolerance)


def test_describe_says_both_in_one_line() -> None:
    def region(job: Job[Any]) -> object:
        return job.args.region

    assert describe(Limit(key="account_id", concurrency=2), None) == "2 per account_id"
    assert describe(None, Rate(5)) == "5/1s"
    assert (
        describe(Limit(key=region, concurrency=4), Rate(10, per=60, key="args.provider", burst=3))
        == "4 per region, 10/60s per args.provider burst 3"
    )


# key_value: a job's key value ---------------------------------------------------------------


def body_of(job: Job[Any]) -> bytes:
    """The encoded body of ``job``, as the stream entry holds it."""
    return encode(job, "j-1")[F_BODY]


JOB = Job(
    type="launch",
    args=Args(provider="gcp", region={"name": "eu", "zone": 2}),
    account_id=7,
    identity=Principal(org_id="org-9"),
)


def never() -> Any:
    raise AssertionError("a path is looked up in the body, without decoding the job")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("account_id", "7"),  # an int, JSON-encoded
        ("args.provider", "gcp"),  # a string as it is
        ("identity.org_id", "org-9"),
        ("type", "launch"),
        ("args.region", '{"name":"eu","zone":2}'),  # an object, JSON-encoded
        ("args.region.zone", "2"),
        ("args.region.name", "eu"),
        ("identity.user", ""),  # None: no value
        ("args.nothing", ""),  # missing
        ("nothing", ""),
        ("args.provider.deeper", ""),  # a path through a string
        ("account_id.x", ""),
    ],
)
def test_a_path_looks_into_the_job_fields_and_args(key: str, expected: str) -> None:
    assert key_value(key, body_of(JOB), never) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "true"), (False, "false"), (2.5, "2.5"), ([1, "a"], '[1,"a"]'), ("", ""), (0, "0")],
)
def test_values_that_are_not_strings_are_json_encoded(value: Any, expected: str) -> None:
    job = Job(type="launch", args=Args(region=value))
    assert key_value("args.region", body_of(job), never) == expected


def test_a_function_gets_the_decoded_job() -> None:
    decoder = TypedDecoder("launch", Args)
    fields = encode(JOB, "j-1")

    def decoded() -> Any:
        out = decoder(fields)
        return out[0] if out else None

    seen: list[Any] = []

    def region(job: Job[Any]) -> object:
        seen.append(job)
        return job.args.region["name"]

    assert key_value(region, fields[F_BODY], decoded) == "eu"
    assert [j.account_id for j in seen] == [7]
    assert key_value(lambda job: job.account_id * 2, None, decoded) == "14"
    assert key_value(lambda job: None, None, decoded) == ""
    assert key_value(lambda job: {"b": 1}, None, decoded) == '{"b":1}'
    assert key_of(fields, region, decoded) == "eu"
    assert key_of(fields, "args.provider", never) == "gcp"


def test_a_function_of_a_job_that_does_not_decode_gives_no_value() -> None:
    def boom(job: Any) -> object:
        raise AssertionError("not called without a job")

    assert key_value(boom, b"{}", lambda: None) == ""


@pytest.mark.parametrize("body", [None, b"", b"not json", b"[1, 2]", b'"text"', b"{}"])
def test_a_body_without_the_value_gives_no_value(body: bytes | None) -> None:
    assert key_value("args.provider", body, never) == ""


def test_a_long_value_is_cut_at_200_characters() -> None:
    long = "x" * 150 + "y" * 150
    job = Job(type="launch", args=Args(provider=long, region=list(range(100))))
    assert KEY_CAP == 200
    assert key_value("args.provider", body_of(job), never) == long[:200]
    encoded = orjson.dumps(list(range(100))).decode()
    assert len(encoded) > 200
    assert key_value("args.region", body_of(job), never) == encoded[:200]
    assert key_value(lambda job: "z" * 500, None, lambda: job) == "z" * 200
    assert key_value("args.provider", orjson.dumps({"args": {"provider": "q" * 200}}), never) == (
        "q" * 200
    )


# The registry carries them ------------------------------------------------------------------


def test_register_and_job_carry_the_limit_and_the_rate() -> None:
    registry = Registry()
    limit, rate = Limit(key="account_id", concurrency=2), Rate(5, key="args.provider")
    registry.register("launch", Args, step, limit=limit, rate=rate)

    @registry.job("report", Args, rate=Rate(1, per=timedelta(minutes=1)))
    async def report(job: Job[Any]) -> None: ...

    @registry.job("plain", Args)
    async def plain(job: Job[Any]) -> None: ...

    launch = registry.get("launch")
    assert (launch.limit, launch.rate) == (limit, rate)
    assert registry.get("report").limit is None
    assert registry.get("report").rate == Rate(1, per=60.0)
    assert (registry.get("plain").limit, registry.get("plain").rate) == (None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": "x"}, "job type 'launch': limit takes a Limit, not 'x'"),
        ({"limit": 2}, "job type 'launch': limit takes a Limit, not 2"),
        ({"limit": Rate(5)}, "job type 'launch': limit takes a Limit, not Rate("),
        ({"rate": 5}, "job type 'launch': rate takes a Rate, not 5"),
        ({"rate": Limit(key="account_id", concurrency=2)}, "job type 'launch': rate takes a Rate"),
    ],
)
def test_a_job_type_refuses_what_is_not_a_limit_or_a_rate(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        JobType(name="launch", args=Args, steps=(step,), **kwargs)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        Registry().register("launch", Args, step, **kwargs)


class Opaque:
    """A value JSON cannot encode."""


def test_a_function_that_raises_or_gives_what_json_cannot_encode_gives_no_value() -> None:
    """As a job that does not decode: key value ``""`` (the worker's admission of the whole
    batch must not fail on one job's key)."""

    def boom(job: Any) -> object:
        raise AttributeError("'NoneType' object has no attribute 'upper'")

    capture, saved = structlog.testing.LogCapture(), structlog.get_config()
    structlog.configure(processors=[capture])
    try:
        assert key_value(boom, None, lambda: JOB) == ""
        assert key_value(lambda job: Opaque(), None, lambda: JOB) == ""
        assert key_value(lambda job: {"a": Opaque()}, None, lambda: JOB) == ""
    finally:
        structlog.configure(**saved)
    said = [(e["event"], e["key"], e["error"]) for e in capture.entries]
    assert said == [
        ("streamq.flow.key_failed", "boom", "AttributeError"),
        ("streamq.flow.key_failed", "<lambda>", "TypeError"),
        ("streamq.flow.key_failed", "<lambda>", "TypeError"),
    ]
