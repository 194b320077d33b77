"""Flow control as a job type declares it: per-key concurrency limits (:class:`Limit`) and rate
limits (:class:`Rate`), and how a job's key value is found (docs/flow-control.md).

Only the configuration and the key lookup live here. The worker's side (asking the backend
for a slot before a job runs, giving it back when the job ends) is ``streamq._worker.flow``;
where the slots are kept is each backend's (``streamq.backends.redis._flow``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from streamq._logging import logger
from streamq.backends._records import F_BODY
from streamq.exceptions import ConfigError

#: A limit's key: a dotted path into the job (``account_id``, ``args.provider``,
#: ``identity.org_id``) or a function of the decoded job that returns its key value.
Key = str | Callable[[Any], object]

#: The longest key value kept (a longer one is cut: the value names Redis keys).
KEY_CAP = 200


def _check_key(owner: str, key: Key | None) -> None:
    if key is None or callable(key):
        return
    if not isinstance(key, str) or not key or not all(key.split(".")):
        raise ConfigError(
            f"{owner}: invalid key {key!r}: a job field or dotted path (account_id, "
            "args.provider) or a function of the job"
        )


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``concurrency`` jobs with one value of ``key`` run at once, across every worker.

    Args:
        key: where a job's key value is: a job field (``account_id``), a dotted path into the
            job (``args.provider``, ``identity.org_id``), or a function of the job.
        concurrency: how many jobs of one key value may run at once (at least 1).
    """

    key: Key
    concurrency: int

    def __post_init__(self) -> None:
        _check_key("Limit", self.key)
        if self.key is None:
            raise ConfigError("Limit: a key is needed (for one limit per type use concurrency)")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise ConfigError(
                f"Limit: concurrency must be a whole number, not {self.concurrency!r}"
            )
        if self.concurrency < 1:
            raise ConfigError(f"Limit: concurrency must be at least 1, not {self.concurrency}")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``n`` jobs start per ``per``, per value of ``key`` (or for the whole type when
    ``key`` is None), kept in the backend (a GCRA in one script on Redis).

    Args:
        n: how many jobs per period (at least 1).
        per: the period (seconds or a timedelta; default one second).
        key: as :class:`Limit`'s key; None: one rate for every job of the type.
        burst: how many may start at once after a quiet spell (default 1: evenly spaced, one
            every ``per / n``).
    """

    n: int
    per: float | timedelta = 1.0
    key: Key | None = None
    burst: int = 1
    #: the spacing of two starts, in ms
    interval_ms: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_key("Rate", self.key)
        for name in ("n", "burst"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"Rate: {name} must be a whole number of at least 1, not {value!r}"
                )
        per = self.per.total_seconds() if isinstance(self.per, timedelta) else self.per
        if isinstance(per, bool) or not isinstance(per, int | float) or not per > 0:
            raise ConfigError(f"Rate: per must be a positive duration, not {self.per!r}")
        object.__setattr__(self, "per", float(per))
        object.__setattr__(self, "interval_ms", float(per) * 1000 / self.n)

    @property
    def tolerance_ms(self) -> float:
        """How far ahead of now the next start may be reserved and still start now (the
        burst, in GCRA's terms)."""
        return self.interval_ms * (self.burst - 1)


def key_value(key: Key, body: bytes | None, decoded: Callable[[], Any]) -> str:
    """A job's value of ``key``: a path is looked up in the encoded body (``decoded`` is not
    called); a function gets the decoded job (``decoded()``; None when it does not decode).
    A missing value is ``""``, a key like any other; so is the value of a function that
    raises or returns what JSON cannot encode (logged): one job's key must not fail the
    admission of its whole batch, and with it the worker, and then each worker that claims it."""
    if callable(key):
        job = decoded()
        if job is None:
            return ""
        try:
            value = key(job)
        except Exception as exc:
            return _no_key(key, exc)
    else:
        try:
            value = orjson.loads(body) if body is not None else None
        except orjson.JSONDecodeError:
            return ""
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    try:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        return _no_key(key, exc)
    return text[:KEY_CAP]


def _no_key(key: Key, exc: Exception) -> str:
    # The error's type only: its message may hold the job's data.
    logger.warning("streamq.flow.key_failed", key=_key_name(key), error=type(exc).__name__)
    return ""


def key_of(fields: Mapping[bytes, bytes], key: Key, decoded: Callable[[], Any]) -> str:
    """:func:`key_value` of an entry's fields."""
    return key_value(key, fields.get(F_BODY), decoded)


def describe(limit: Limit | None, rate: Rate | None) -> str:
    """One line about a type's flow control, for the start-up line and ``streamq workers``."""
    parts = []
    if limit is not None:
        parts.append(f"{limit.concurrency} per {_key_name(limit.key)}")
    if rate is not None:
        per = f"{rate.per:g}s"
        where = f" per {_key_name(rate.key)}" if rate.key is not None else ""
        burst = f" burst {rate.burst}" if rate.burst > 1 else ""
        parts.append(f"{rate.n}/{per}{where}{burst}")
    return ", ".join(parts)


def _key_name(key: Key) -> str:
    return key if isinstance(key, str) else getattr(key, "__name__", "key")
