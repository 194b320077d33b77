"""The typer app and what every command shares: options, durations, errors, output helpers."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TextIO, TypeVar, cast

import structlog
import typer

from streamq import __version__, _eventloop
from streamq._otel_setup import configure_from_env
from streamq._producer import Queue
from streamq._registry import Registry
from streamq._settings import connect, is_embedded_url, resolve_url
from streamq.exceptions import ConfigError

T = TypeVar("T")

app = typer.Typer(
    name="streamq",
    help="Background jobs on Redis Streams consumer groups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``250ms``, ``30s``, ``5m``, ``1h`` or plain seconds, in seconds (BadParameter if not)."""
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration (examples: 250ms, 30s, 5m, 1h, 2.5)")
    return float(m.group(1)) * _UNITS[m.group(2)]


Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="STREAMQ_REDIS_URL",
        help="Redis URL (redis://, rediss://, unix://, or embedded:); default: the embedded "
        "server, unless STREAMQ_EMBEDDED=0.",
    ),
]
Prefix = Annotated[str, typer.Option(envvar="STREAMQ_PREFIX", help="Key prefix.")]
HandlersOpt = Annotated[
    str,
    typer.Option(
        "--handlers",
        envvar="STREAMQ_HANDLERS",
        help="Module whose `registry` holds the job types.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Machine-readable output (schema: docs/cli-json.md).")
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh loop (uvloop's when installed; see streamq._eventloop)."""
    return _eventloop.run(coro)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error line and exit with ``code`` (1 runtime, 2 usage)."""
    typer.echo(f"streamq: error: {message}", err=True)
    raise typer.Exit(code)


def resolve(url: str | None) -> str:
    """The server URL; without one (or with ``embedded:``), the embedded server (started on
    demand), said once on stderr. With STREAMQ_EMBEDDED=0 a missing URL is a usage error."""
    if url and not is_embedded_url(url):
        return url
    try:
        embedded = resolve_url(url, announce=False)  # said here, on stderr, not as a log line
    except ConfigError as exc:
        fail(str(exc), 2)
    typer.echo(f"streamq: using the embedded server at {embedded}", err=True)
    return embedded


def open_queue(url: str | None, prefix: str, registry: Registry | None = None) -> Queue:
    """A Queue on the resolved server."""
    return Queue(connect(resolve(url), prefix=prefix), registry=registry)


def load_registry(module: str) -> Registry:
    """Import ``module`` and return its ``registry`` (exit 2 if there is none).

    The current directory comes first on the import path, as for uvicorn or celery: run from
    an application's folder, ``--handlers handlers`` is that application's package.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        fail(f"cannot import handlers module {module!r}: {exc}", 2)
    registry = getattr(mod, "registry", None)
    if not isinstance(registry, Registry):
        fail(f"module {module!r} has no `registry` (a streamq.Registry)", 2)
    return registry


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


class LogSink:
    """Where the CLI's log lines go: ``stream`` (stderr), except that a line that cannot be
    written is dropped instead of raised into the code that logged it. When stderr is a pipe
    whose reader went away (a log collector that died, ``streamq consume ... | head``), every
    write fails (BrokenPipeError); raised into a worker, one failed line left a signal handler
    half done and SIGTERM did nothing (the worker then hung until SIGKILL). There is nowhere
    left to say so: from the first failure on, lines are dropped."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        #: whether a write failed (from then on nothing is written)
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return int(self._stream.write(text))
            except (OSError, ValueError):  # ValueError: the stream was closed
                self.broken = True
        return 0

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.broken = True


def configure_logging(fmt: str, level: str) -> None:
    """Console or JSON lines on stderr (through :class:`LogSink`), with the job fields bound
    by the worker."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # structlog asks for a TextIO and calls only print(..., file=, flush=True) on it.
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, LogSink(sys.stderr))),
        cache_logger_on_first_use=True,
    )


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"streamq {__version__}")
        raise typer.Exit()


@app.callback()
def _common_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback when a command fails.")
    ] = False,
) -> None:
    """Background jobs on Redis Streams consumer groups.

    Without STREAMQ_REDIS_URL (or --url), commands use the embedded server and say so;
    STREAMQ_EMBEDDED=0 makes that an error.
    """
    if debug:
        os.environ["STREAMQ_DEBUG"] = "1"
    # Traces and metrics per OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (none when unset);
    # flushed when the command ends. consume configures them itself: with --metrics-port its
    # one meter provider has a Prometheus reader too (readers cannot be added later).
    if ctx.invoked_subcommand != "consume":
        ctx.call_on_close(configure_from_env())
