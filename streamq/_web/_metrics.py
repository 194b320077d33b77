"""``GET /metrics``: the overview's numbers in the Prometheus text exposition format (0.0.4).

Written by hand (about forty lines) rather than with prometheus-client: the dashboard's extra
stays starlette and uvicorn, and a scrape is one stats read turned into text, with no registry
kept between scrapes. The names are the ones a worker's ``--metrics-port`` exposes for the same
quantities (its OpenTelemetry instruments as the Prometheus exporter names them), and the job
type is the same label, ``streamq_job_type``, so one query reads either (docs/observability.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamq._inspect import TypeStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: the label of the job type (what the exporter makes of the OTel attribute streamq.job.type)
TYPE_LABEL = "streamq_job_type"

#: (name, TYPE, HELP, value of a type's stats) in the order they are written
_FAMILIES: tuple[tuple[str, str, str, Callable[[TypeStats], float]], ...] = (
    ("streamq_jobs_waiting", "gauge", "Jobs enqueued, not yet delivered", lambda s: s.waiting),
    (
        "streamq_jobs_in_flight",
        "gauge",
        "Jobs delivered and not yet acked (all workers)",
        lambda s: s.in_flight,
    ),
    (
        "streamq_oldest_in_flight_seconds",
        "gauge",
        "Age since enqueue of the oldest job in flight (0 when none is)",
        lambda s: s.oldest_in_flight_s or 0.0,
    ),
    ("streamq_jobs_scheduled", "gauge", "Jobs scheduled, not due yet", lambda s: s.scheduled),
    ("streamq_jobs_held", "gauge", "Jobs held back by flow control", lambda s: s.held),
    ("streamq_jobs_dead", "gauge", "Jobs in the dead stream now", lambda s: s.dead),
    ("streamq_consumers", "gauge", "Consumers of the type's group", lambda s: len(s.consumers)),
    ("streamq_paused", "gauge", "1 while the type is paused, else 0", lambda s: int(s.paused)),
    ("streamq_jobs_enqueued_total", "counter", "Jobs enqueued", lambda s: s.enqueued),
    ("streamq_jobs_processed_total", "counter", "Jobs that succeeded", lambda s: s.processed),
    (
        "streamq_jobs_failed_total",
        "counter",
        "Deliveries whose handler failed",
        lambda s: s.failed,
    ),
    ("streamq_jobs_retried_total", "counter", "Failed jobs scheduled again", lambda s: s.retried),
    (
        "streamq_jobs_dead_lettered_total",
        "counter",
        "Jobs moved to dead",
        lambda s: s.dead_lettered,
    ),
    ("streamq_jobs_cancelled_total", "counter", "Jobs cancelled", lambda s: s.cancelled),
)


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def exposition(stats: Sequence[TypeStats]) -> str:
    """The text of one scrape: every family with its HELP and TYPE, one sample per type."""
    lines: list[str] = []
    for name, kind, help_text, value_of in _FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for s in stats:
            lines.append(f'{name}{{{TYPE_LABEL}="{_label_value(s.type)}"}} {_number(value_of(s))}')
    return "\n".join(lines) + "\n"
