"""Periodic jobs as declared in code: ``Registry.every`` and ``Registry.cron``.

A schedule only computes tick times; nothing about it is stored on the server except the time
of the last tick that fired (see ``docs/periodic.md``), so a schedule removed from the code stops
firing. Tick times are the same in every process (multiples of the interval since the epoch, or
the cron expression's times), which is what lets every worker take part while each tick fires
once. cronsim (the only module that imports it) parses the cron expressions.
"""

from __future__ import annotations

import math
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim

from streamq.exceptions import ConfigError

#: A tick fired up to this many seconds after its time is on time; a later one was missed
#: (every worker was down) and counts against ``catch_up``.
ON_TIME_S = 1.0

#: The namespace of the deterministic job ids of ticks (uuid5 of schedule name and tick time).
_TICK_NAMESPACE = uuid.UUID("5e1f6a0c-3b8e-4d2a-9a57-7c1d2f0b9e41")


def _args_digest(args: Mapping[str, Any]) -> str:
    """A short digest of the args, so two schedules that differ only in args have two names."""
    text = repr(sorted(args.items()))
    return f"{zlib.crc32(text.encode()):08x}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic job: which type it enqueues, with which args, and when.

    ``kind`` is ``every`` (``interval`` seconds) or ``cron`` (``expression`` in ``tz``). ``name``
    is stable across processes and restarts: it keys the last-tick marker on the server.
    ``catch_up`` is how many ticks missed while every worker was down fire when one comes back
    (at most, and only the latest ones).
    """

    type: str
    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    interval: float = 0.0
    expression: str = ""
    tz: str = "UTC"
    catch_up: int = 1
    name: str = ""
    _zone: ZoneInfo | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.catch_up < 0:
            raise ConfigError(f"schedule of {self.type!r}: catch_up must be 0 or more")
        if self.kind == "every":
            if not (self.interval > 0 and math.isfinite(self.interval)):
                raise ConfigError(f"schedule of {self.type!r}: the interval must be positive")
            when = f"every {self.interval:g}s"
        elif self.kind == "cron":
            try:
                zone = ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(
                    f"schedule of {self.type!r}: unknown time zone {self.tz!r}"
                ) from exc
            object.__setattr__(self, "_zone", zone)
            try:
                next(cronsim.CronSim(self.expression, datetime.now(zone)))
            except cronsim.CronSimError as exc:
                raise ConfigError(
                    f"schedule of {self.type!r}: bad cron expression {self.expression!r}: {exc}"
                ) from exc
            except StopIteration:
                raise ConfigError(
                    f"schedule of {self.type!r}: cron expression {self.expression!r} never matches"
                ) from None
            when = f"cron {self.expression} {self.tz}"
        else:  # pragma: no cover - only the registry builds schedules
            raise ConfigError(f"unknown schedule kind {self.kind!r}")
        if not self.name:
            object.__setattr__(self, "name", f"{self.type} {when} args={_args_digest(self.args)}")
        elif any(c in self.name for c in "\r\n"):
            raise ConfigError(f"schedule name {self.name!r} must be one line")

    def ticks_back(self, now_ms: int) -> Iterator[int]:
        """Tick times (epoch milliseconds) at or before ``now_ms``, latest first."""
        if self.kind == "every":
            step = self.interval * 1000
            k = math.floor(now_ms / step)
            while k >= 0:
                yield round(k * step)
                k -= 1
            return
        assert self._zone is not None
        start = datetime.fromtimestamp(now_ms / 1000, self._zone)
        # cronsim's reverse iteration yields times before the start, in whole seconds (whole
        # minutes before 2.7): start past the minute, so a tick at ``now_ms`` is not skipped.
        later = start + timedelta(seconds=61)
        for when in cronsim.CronSim(self.expression, later, reverse=True):
            ms = round(when.timestamp() * 1000)
            if ms <= now_ms:
                yield ms

    def next_tick(self, after_ms: int) -> int:
        """The first tick time (epoch milliseconds) after ``after_ms``."""
        if self.kind == "every":
            step = self.interval * 1000
            k = math.floor(after_ms / step) + 1
            ms = round(k * step)
            return ms if ms > after_ms else round((k + 1) * step)
        assert self._zone is not None
        start = datetime.fromtimestamp(after_ms / 1000, self._zone)
        return round(next(cronsim.CronSim(self.expression, start)).timestamp() * 1000)

    def due(self, now_ms: int, last_ms: int | None, looked_ms: int | None = None) -> list[int]:
        """The ticks to fire at ``now_ms``, oldest first, given the last one that fired.

        Normally that is the latest tick, on time. After a gap (every worker was down) it is
        the latest ``catch_up`` of the ticks since ``last_ms``, never a burst; with
        ``catch_up=0`` only a tick on time (within :data:`ON_TIME_S`) fires. A schedule with no
        tick fired yet (new) missed nothing: its latest tick fires only when on time.

        ``looked_ms`` is when the asking worker last fired what was due (None at its first
        look): the ticks that fell due since then came while it ran, late only because its
        loop was (a blocked event loop, a slow round trip): each of them still on time fires,
        and of the older ones the latest ``catch_up``, so a loop that wakes 400 ms late does
        not drop the tick between.
        """
        latest = next(self.ticks_back(now_ms), None)
        if latest is None or (last_ms is not None and latest <= last_ms):
            return []
        if looked_ms is not None and last_ms is not None:
            # Only the ticks since this worker's last look are its to judge now (it judged the
            # older ones then): each on time fires, and the latest catch_up of the rest.
            on_time: list[int] = []
            late: list[int] = []
            for ms in self.ticks_back(now_ms):
                if ms <= max(last_ms, looked_ms):
                    break
                if now_ms - ms <= ON_TIME_S * 1000:
                    on_time.append(ms)
                elif len(late) < self.catch_up:
                    late.append(ms)
                else:
                    break
            return (on_time + late)[::-1]
        if now_ms - latest <= ON_TIME_S * 1000 and (last_ms is None or self.catch_up <= 1):
            return [latest]
        if last_ms is None or self.catch_up == 0:
            return []
        out: list[int] = []
        for ms in self.ticks_back(now_ms):
            if ms <= last_ms or len(out) >= self.catch_up:
                break
            out.append(ms)
        return out[::-1]

    def job_id(self, tick_ms: int) -> str:
        """The job id of the tick at ``tick_ms``: the same in every worker."""
        return str(uuid.uuid5(_TICK_NAMESPACE, f"{self.name}@{tick_ms}"))


def describe_tick(ms: int | None) -> str:
    """A tick time as an ISO 8601 UTC string ("" for none)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
