"""The text of ``GET /metrics`` (``streamq._web._metrics``), read back by prometheus-client's
parser: one sample per type and family, the edge values, label values escaped."""

from __future__ import annotations

import pytest

from streamq._inspect import ConsumerStats, TypeStats
from streamq._web._metrics import exposition

parser = pytest.importorskip("prometheus_client.parser", reason="the metrics extra is absent")


def stats(type: str, **fields: object) -> TypeStats:
    """A TypeStats with zeros but for ``fields``."""
    base: dict[str, object] = {
        "waiting": 0,
        "in_flight": 0,
        "oldest_in_flight_s": None,
        "dead": 0,
        "enqueued": 0,
        "processed": 0,
        "failed": 0,
        "retried": 0,
        "dead_lettered": 0,
        "consumers": {},
    }
    return TypeStats(type=type, **(base | fields))  # type: ignore[arg-type]


def samples(text: str) -> dict[tuple[str, str], float]:
    """(sample name, type label) -> value."""
    return {
        (s.name, s.labels["streamq_job_type"]): s.value
        for f in parser.text_string_to_metric_families(text)
        for s in f.samples
    }


def test_every_family_has_one_sample_per_type() -> None:
    """Values as the stats say; no oldest job in flight is 0, a pause is 1."""
    text = exposition(
        [
            stats(
                "launch",
                waiting=3,
                in_flight=2,
                oldest_in_flight_s=12.5,
                processed=7,
                consumers={"w1": ConsumerStats(in_flight=2, idle_s=0.1)},
            ),
            stats("noop", paused=True, held=4, scheduled=1, cancelled=2),
        ]
    )
    got = samples(text)
    assert got[("streamq_jobs_waiting", "launch")] == 3
    assert got[("streamq_oldest_in_flight_seconds", "launch")] == 12.5
    assert got[("streamq_oldest_in_flight_seconds", "noop")] == 0
    assert got[("streamq_jobs_processed_total", "launch")] == 7
    assert got[("streamq_consumers", "launch")] == 1
    assert got[("streamq_paused", "noop")] == 1
    assert got[("streamq_paused", "launch")] == 0
    assert got[("streamq_jobs_held", "noop")] == 4
    assert got[("streamq_jobs_cancelled_total", "noop")] == 2
    families = {f.name: f.type for f in parser.text_string_to_metric_families(text)}
    assert len(got) == 2 * len(families) == 28
    assert families["streamq_jobs_dead_lettered"] == "counter"
    assert families["streamq_jobs_in_flight"] == "gauge"


def test_no_types_is_only_help_and_type_lines() -> None:
    """An empty queue: the families are declared, with no sample."""
    text = exposition([])
    assert all(line.startswith("# ") for line in text.splitlines())
    assert "# TYPE streamq_jobs_processed_total counter" in text


def test_label_values_are_escaped() -> None:
    """A backslash, a quote or a newline in a type name cannot break the format."""
    odd = 'a"b\\c\nd'
    assert ("streamq_jobs_waiting", odd) in samples(exposition([stats(odd, waiting=1)]))
