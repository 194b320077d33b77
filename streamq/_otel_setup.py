"""Configuring the OpenTelemetry SDK from the standard ``OTEL_*`` variables, and the Prometheus
endpoint of ``consume --metrics-port``: the CLI only (the library never installs providers).

Kept apart from :mod:`streamq._tracing` (the hot path's spans and instruments, API only): this
module imports the SDK, the exporters and prometheus-client, each lazily, when asked for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace

from streamq._tracing import recheck
from streamq.exceptions import ConfigError

_EXPORTER_PACKAGES = {"otlp": "opentelemetry-exporter-otlp-proto-http"}


class PrometheusEndpoint:
    """Where ``configure_from_env(prometheus=...)`` serves this process's metrics; ``port``
    is the one bound (the one asked for, or the one the system chose for 0)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


def configure_from_env(prometheus: PrometheusEndpoint | None = None) -> Callable[[], None]:
    """Install SDK providers from the standard OTEL_* variables; returns a shutdown function.

    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: ``console``, ``otlp`` or ``none``
    (unset means ``none`` here: a worker does not fail for want of a collector).
    ``OTEL_SERVICE_NAME`` names the service; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read by the
    OTLP exporter itself. Raises ConfigError for an unknown exporter or a missing package.

    With ``prometheus``, the one meter provider also has a Prometheus reader (the ``metrics``
    extra), served over HTTP at that address from a daemon thread (``prometheus.port`` is set
    to the port bound). ConfigError when the extra is missing or the address cannot be bound.
    """
    traces = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    metric = os.environ.get("OTEL_METRICS_EXPORTER", "none").strip().lower() or "none"
    for var, value in (("OTEL_TRACES_EXPORTER", traces), ("OTEL_METRICS_EXPORTER", metric)):
        if value not in ("console", "otlp", "none"):
            raise ConfigError(f"{var}={value!r}: use console, otlp or none")
    shutdowns: list[Callable[[], Any]] = []
    if traces == "none" and metric == "none" and prometheus is None:
        return lambda: None
    from opentelemetry.sdk.resources import Resource  # lazy: the SDK only when asked for

    # Every exporter is built before any provider is installed: all or nothing (the
    # Prometheus endpoint is bound last, so nothing else can fail after it listens).
    span_exporter = _span_exporter(traces) if traces != "none" else None
    readers = [_periodic_reader(metric)] if metric != "none" else []
    if prometheus is not None:
        reader, stop_server = _prometheus_reader(prometheus)
        readers.append(reader)
        shutdowns.append(stop_server)
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "streamq")})
    if span_exporter is not None:
        shutdowns.append(_install_traces(span_exporter, resource))
    if readers:
        shutdowns.append(_install_metrics(readers, resource))

    def shutdown() -> None:
        for fn in shutdowns:
            fn()

    return shutdown


def _missing(kind: str, exc: ImportError) -> ConfigError:
    package = _EXPORTER_PACKAGES.get(kind, "opentelemetry-sdk")
    return ConfigError(f"the {kind} exporter needs the package {package} ({exc.name} not found)")


def _span_exporter(kind: str) -> Any:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    try:
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
    except ImportError as exc:
        raise _missing(kind, exc) from None
    return ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + os.linesep)


def _metric_exporter(kind: str) -> Any:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    try:
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter()
    except ImportError as exc:
        raise _missing(kind, exc) from None
    return ConsoleMetricExporter(formatter=lambda data: data.to_json(indent=None) + os.linesep)


def _install_traces(exporter: Any, resource: Any) -> Callable[[], Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    recheck()
    return provider.shutdown


def _periodic_reader(kind: str) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(_metric_exporter(kind))


#: What ``--metrics-port`` needs: the ``metrics`` extra of pyproject.toml.
METRICS_EXTRA = "pip install 'streamq[metrics]'"


def metrics_extra_missing() -> str | None:
    """The first module of the ``metrics`` extra that cannot be imported, or None."""
    for name in ("prometheus_client", "opentelemetry.exporter.prometheus"):
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def _prometheus_reader(at: PrometheusEndpoint) -> tuple[Any, Callable[[], None]]:
    """A PrometheusMetricReader and the HTTP server that serves it (started; stop function)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import REGISTRY, start_http_server
    except ImportError as exc:
        raise ConfigError(
            f"serving metrics needs the metrics extra ({exc.name} not found): {METRICS_EXTRA}"
        ) from None
    try:
        server, thread = start_http_server(at.port, addr=at.host, registry=REGISTRY)
    except OSError as exc:  # in use, not an address of this host, not allowed (< 1024)
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot serve metrics on {at.host}:{at.port}: {reason}") from None
    at.port = server.server_port
    # Registers itself with prometheus_client's REGISTRY (beside its process_* and python_*
    # collectors), which the server above serves.
    reader = PrometheusMetricReader()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return reader, stop


def _install_metrics(readers: list[Any], resource: Any) -> Callable[[], Any]:
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)
    recheck()
    return provider.shutdown
