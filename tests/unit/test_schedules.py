"""Schedules as declared: validation at declaration, tick times of every and cron (in a time
zone), what fires after a gap, stable names and job ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from streamq import Registry
from streamq._schedules import Schedule
from streamq.exceptions import ConfigError


@dataclass(frozen=True)
class Args:
    """Some args."""

    n: int = 0


def ms(when: datetime) -> int:
    """A datetime as epoch milliseconds."""
    return round(when.timestamp() * 1000)


def test_every_and_cron_are_declared_on_the_registry() -> None:
    """registry.every and registry.cron return their schedules, listed by schedules()."""
    r = Registry()
    a = r.every(timedelta(minutes=5), "report", args={"n": 1})
    b = r.cron("0 9 * * MON-FRI", "digest", tz="Europe/Riga")
    assert a.interval == 300.0
    assert a.kind == "every"
    assert b.expression == "0 9 * * MON-FRI"
    assert b.tz == "Europe/Riga"
    assert r.schedules() == [a, b]
    assert r.schedules(["digest"]) == [b]


@pytest.mark.parametrize(
    "declare",
    [
        lambda r: r.every(0, "t"),
        lambda r: r.every(-1.0, "t"),
        lambda r: r.every(float("inf"), "t"),
        lambda r: r.every(1.0, "t", catch_up=-1),
        lambda r: r.cron("61 * * * *", "t"),
        lambda r: r.cron("not cron", "t"),
        lambda r: r.cron("0 0 31 2 *", "t"),
        lambda r: r.cron("* * * * *", "t", tz="Mars/Olympus"),
        lambda r: r.every(1.0, "bad{type}"),
    ],
)
def test_a_bad_schedule_is_a_config_error_at_declaration(declare: object) -> None:
    """A non-positive interval, a bad cron expression or time zone, a bad type name."""
    with pytest.raises(ConfigError):
        declare(Registry())  # type: ignore[operator]


def test_a_schedule_declared_twice_is_refused_and_names_differ_by_args() -> None:
    """The same schedule twice is an error; other args make another name."""
    r = Registry()
    a = r.every(1.0, "t", args={"n": 1})
    b = r.every(1.0, "t", args={"n": 2})
    assert a.name != b.name
    with pytest.raises(ConfigError):
        r.every(1.0, "t", args={"n": 1})
    assert r.every(1.0, "t", args={"n": 1}, name="explicit").name == "explicit"


def test_cron_next_tick_in_a_time_zone() -> None:
    """09:00 on weekdays in Riga (UTC+2 in winter, +3 in summer) from fixed times."""
    s = Schedule("t", "cron", expression="0 9 * * MON-FRI", tz="Europe/Riga")
    riga = ZoneInfo("Europe/Riga")
    friday_10 = datetime(2026, 1, 16, 10, 0, tzinfo=riga)
    assert s.next_tick(ms(friday_10)) == ms(datetime(2026, 1, 19, 7, 0, tzinfo=UTC))  # Monday
    summer = datetime(2026, 7, 1, 8, 59, 59, tzinfo=riga)
    assert s.next_tick(ms(summer)) == ms(datetime(2026, 7, 1, 6, 0, tzinfo=UTC))
    at_tick = ms(datetime(2026, 7, 1, 9, 0, tzinfo=riga))
    assert next(s.ticks_back(at_tick)) == at_tick  # a tick at "now" is due now
    assert s.next_tick(at_tick) == ms(datetime(2026, 7, 2, 9, 0, tzinfo=riga))


def test_cron_in_utc_by_default() -> None:
    """Without tz the expression is read in UTC."""
    s = Registry().cron("30 2 * * *", "t")
    start = ms(datetime(2026, 3, 1, 3, 0, tzinfo=UTC))
    assert s.next_tick(start) == ms(datetime(2026, 3, 2, 2, 30, tzinfo=UTC))


def test_every_ticks_are_multiples_of_the_interval() -> None:
    """Tick times are the same in every process: multiples of the interval since the epoch."""
    s = Schedule("t", "every", interval=0.25)
    assert s.next_tick(1_000) == 1_250
    assert s.next_tick(1_249) == 1_250
    assert list(zip(range(3), s.ticks_back(1_100), strict=False)) == [
        (0, 1_000),
        (1, 750),
        (2, 500),
    ]


def test_after_a_gap_one_tick_fires_never_a_burst() -> None:
    """Ten ticks missed: catch_up=1 fires the latest only, catch_up=3 the latest three,
    catch_up=0 none unless on time; a new schedule fires only a tick on time."""
    one = Schedule("t", "every", interval=1.0)
    assert one.due(20_500, 20_000) == []  # nothing due since the last tick
    assert one.due(21_100, 20_000) == [21_000]  # the next tick, on time
    assert one.due(30_500, 20_000) == [30_000]  # a gap: the latest only
    assert one.due(35_000 + 5_000, 20_000) == [40_000]
    three = Schedule("t", "every", interval=1.0, catch_up=3)
    assert three.due(30_500, 20_000) == [28_000, 29_000, 30_000]
    zero = Schedule("t", "every", interval=10.0, catch_up=0)
    assert zero.due(40_500, 20_000) == [40_000]  # on time
    assert zero.due(41_500, 20_000) == []  # 1.5 s late: skipped
    assert one.due(30_500, None) == [30_000]
    assert zero.due(41_900, None) == []  # new, and the latest tick is 1.9 s old


def test_a_worker_late_on_its_own_loop_fires_every_tick_it_owes() -> None:
    """The worker looked at 20.0 s and fired tick 20 000; its loop woke only at 22.4 s: ticks
    21 000 and 22 000 came while it ran, so both fire (not the latest only, as after a gap);
    of the ticks that came while it ran but are over ON_TIME_S old, the latest catch_up fire."""
    one = Schedule("t", "every", interval=1.0)
    assert one.due(22_400, 20_000, 20_005) == [21_000, 22_000]
    assert one.due(22_400, 20_000) == [22_000]  # its first look: a gap, the latest only
    assert one.due(22_400, 22_000, 20_005) == []  # another worker fired them
    fine = Schedule("t", "every", interval=0.2)
    # Woke 1.5 s late: the five ticks of the last second are on time, and one of the older
    # ones (catch_up=1) fires too; the rest of the gap is not a burst.
    assert fine.due(21_500, 20_000, 20_001) == [20_400, 20_600, 20_800, 21_000, 21_200, 21_400]
    zero = Schedule("t", "every", interval=0.2, catch_up=0)
    assert zero.due(21_500, 20_000, 20_001) == [20_600, 20_800, 21_000, 21_200, 21_400]
    three = Schedule("t", "every", interval=1.0, catch_up=3)
    assert three.due(24_600, 20_000, 20_005) == [21_000, 22_000, 23_000, 24_000]


def test_tick_job_ids_are_deterministic() -> None:
    """Every worker builds the same job id for one tick, another for the next."""
    a = Schedule("t", "every", interval=1.0)
    b = Schedule("t", "every", interval=1.0)
    assert a.job_id(1_000) == b.job_id(1_000) != a.job_id(2_000)
