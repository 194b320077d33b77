"""The ``streamq`` command line. With ``__main__``, the only module that imports typer.

Commands stay thin over the ``streamq`` API. Every error a user can cause ends in one line on
stderr and a non-zero exit (2 for usage, 1 for everything else), never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import structlog
import typer

from streamq import __version__, _server
from streamq._job import Job, Principal
from streamq._queue import Queue, TypeStats, connect, resolve_url
from streamq._registry import Registry
from streamq._worker import Worker
from streamq.backends.redis import redact_url
from streamq.exceptions import ConfigError, StreamqError

T = TypeVar("T")

app = typer.Typer(
    name="streamq",
    help="Background jobs on Redis Streams consumer groups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
server_app = typer.Typer(help="The embedded server (used when STREAMQ_REDIS_URL is not set).")
app.add_typer(server_app, name="server")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``250ms``, ``30s``, ``5m``, ``1h`` or plain seconds, in seconds."""
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration (examples: 250ms, 30s, 5m, 1h, 2.5)")
    return float(m.group(1)) * _UNITS[m.group(2)]


Duration = Annotated[str, typer.Option(metavar="DURATION")]
Url = Annotated[
    str | None,
    typer.Option("--url", envvar="STREAMQ_REDIS_URL", help="Redis URL; default: embedded server."),
]
Prefix = Annotated[str, typer.Option(envvar="STREAMQ_PREFIX", help="Key prefix.")]
HandlersOpt = Annotated[
    str,
    typer.Option(
        "--handlers", envvar="STREAMQ_HANDLERS", help="Module whose `registry` has the job types."
    ),
]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error line and exit."""
    typer.echo(f"streamq: error: {message}", err=True)
    raise typer.Exit(code)


def load_registry(module: str) -> Registry:
    """Import ``module`` and return its ``registry``."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        fail(f"cannot import handlers module {module!r}: {exc}", 2)
    registry = getattr(mod, "registry", None)
    if not isinstance(registry, Registry):
        fail(f"module {module!r} has no `registry` (a streamq.Registry)", 2)
    return registry


def configure_logging(fmt: str, level: str) -> None:
    """Console or JSON lines on stderr, with the job fields bound by the worker."""
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Background jobs on Redis Streams consumer groups."""


@app.command()
def consume(
    types: Annotated[list[str], typer.Argument(help="Job types to serve.")],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 32,
    handlers: HandlersOpt = "handlers",
    claim_after: Duration = "60s",
    heartbeat: Duration = "10s",
    max_deliveries: Annotated[int, typer.Option(min=1)] = 5,
    job_timeout: Duration = "30m",
    shutdown_grace: Duration = "30s",
    retry_base: Duration = "1s",
    log_format: Annotated[str, typer.Option(help="console or json")] = "",
    log_level: str = "info",
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Run a worker for TYPES until SIGTERM/SIGINT (a second signal stops at once).

    Example: streamq consume launch noop -c 64
    """
    fmt = log_format or ("console" if sys.stderr.isatty() else "json")
    if fmt not in ("console", "json"):
        fail(f"--log-format must be console or json, not {fmt!r}", 2)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level must be debug, info, warning or error, not {log_level!r}", 2)
    configure_logging(fmt, log_level)
    registry = load_registry(handlers)
    missing = [t for t in types if t not in registry]
    if missing:
        fail(f"no handler registered for {', '.join(missing)} in module {handlers!r}", 2)
    resolved = resolve_url(url)
    backend = connect(resolved, prefix=prefix)
    worker = Worker(
        backend,
        registry,
        types,
        concurrency=concurrency,
        claim_after=parse_duration(claim_after),
        heartbeat=parse_duration(heartbeat),
        max_deliveries=max_deliveries,
        job_timeout=parse_duration(job_timeout),
        shutdown_grace=parse_duration(shutdown_grace),
        retry_base=parse_duration(retry_base),
    )
    typer.echo(
        f"streamq: consuming {', '.join(types)} from {redact_url(resolved)} "
        f"(concurrency {concurrency}, consumer {worker.consumer})",
        err=True,
    )

    async def main() -> None:
        try:
            await worker.run(handle_signals=True)
        finally:
            await backend.aclose()

    _run(main())


def _read_args(text: str) -> Any:
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            fail(f"cannot read args file {text[1:]!r}: {exc.strerror}", 2)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--args is not valid JSON: {exc}", 2)


@app.command()
def enqueue(
    type: Annotated[str, typer.Argument(help="Job type.")],
    args: Annotated[str, typer.Option("--args", help="JSON object, or @file.json.")] = "{}",
    account_id: int = 0,
    org_id: str = "",
    account_number: str = "",
    request_id: Annotated[str | None, typer.Option()] = None,
    count: Annotated[int, typer.Option(min=1)] = 1,
    handlers: HandlersOpt = "handlers",
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Enqueue COUNT jobs of TYPE (args checked against the type first); prints their ids.

    Example: streamq enqueue noop --args '{"sleep": 0.1}' --count 100
    """
    registry = load_registry(handlers)
    raw = _read_args(args)
    identity = Principal(account_number=account_number, org_id=org_id)
    jobs = [
        Job(type=type, args=raw, account_id=account_id, identity=identity, request_id=request_id)
        for _ in range(count)
    ]

    async def main() -> list[str]:
        async with Queue(connect(url, prefix=prefix), registry=registry) as q:
            ids: list[str] = []
            for i in range(0, len(jobs), 1000):
                ids += await q.enqueue_many(jobs[i : i + 1000])
            return ids

    try:
        ids = _run(main())
    except StreamqError as exc:
        fail(str(exc), 2 if isinstance(exc, ConfigError) else 1)
    typer.echo("\n".join(ids))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def stats_table(stats: list[TypeStats]) -> str:
    """The ``streamq stats`` table."""
    headers = ["type", "waiting", "in flight", "oldest", "dead", "processed", "failed", "retried"]
    headers.append("consumers")
    rows = [
        [
            s.type,
            str(s.waiting),
            str(s.in_flight),
            _age(s.oldest_in_flight_s),
            str(s.dead),
            str(s.processed),
            str(s.failed),
            str(s.retried),
            str(len(s.consumers)),
        ]
        for s in stats
    ]
    return _table(headers, rows)


@app.command()
def stats(
    types: Annotated[
        list[str] | None, typer.Argument(help="Job types (default: registered).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    handlers: HandlersOpt = "handlers",
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Waiting, in flight (from the PEL, across all workers), dead and counters per type.

    Example: streamq stats launch --json
    """
    names = types or load_registry(handlers).names()

    async def main() -> list[TypeStats]:
        async with Queue(connect(url, prefix=prefix)) as q:
            return await q.stats(names)

    result = _run(main())
    if as_json:
        typer.echo(json.dumps([_stats_dict(s) for s in result], indent=2))
    else:
        typer.echo(stats_table(result))


def _stats_dict(s: TypeStats) -> dict[str, Any]:
    return {
        "type": s.type,
        "waiting": s.waiting,
        "in_flight": s.in_flight,
        "oldest_in_flight_s": s.oldest_in_flight_s,
        "dead": s.dead,
        "enqueued": s.enqueued,
        "processed": s.processed,
        "failed": s.failed,
        "retried": s.retried,
        "dead_lettered": s.dead_lettered,
        "consumers": {
            k: {"in_flight": v.in_flight, "idle_s": v.idle_s} for k, v in s.consumers.items()
        },
    }


@app.command()
def pending(
    type: Annotated[str, typer.Argument(help="Job type.")],
    consumer: Annotated[str | None, typer.Option()] = None,
    min_idle: Duration = "0",
    limit: int = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """The jobs of TYPE in flight, longest idle first (from XPENDING).

    Example: streamq pending launch --min-idle 5m
    """
    idle = parse_duration(min_idle)

    async def main() -> Any:
        async with Queue(connect(url, prefix=prefix)) as q:
            return await q.pending(type, consumer=consumer, min_idle=idle, limit=limit)

    rows = _run(main())
    if as_json:
        typer.echo(json.dumps([_pj(r) for r in rows]))
        return
    per: dict[str, int] = {}
    for r in rows:
        per[r.consumer] = per.get(r.consumer, 0) + 1
    typer.echo(f"{len(rows)} in flight" + "".join(f", {c}: {n}" for c, n in sorted(per.items())))
    table = [
        [r.job_id or "?", r.entry_id, r.consumer, _age(r.idle_s), str(r.deliveries)] for r in rows
    ]
    if table:
        typer.echo(_table(["job id", "entry id", "consumer", "idle", "deliveries"], table))


def _pj(r: Any) -> dict[str, Any]:
    return {k: getattr(r, k) for k in ("job_id", "entry_id", "consumer", "idle_s", "deliveries")}


@server_app.command("start")
def server_start() -> None:
    """Start the embedded server (or find it running); prints its URL."""
    typer.echo(_server.ensure_server())


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded server (its data stays in the state folder)."""
    typer.echo("stopped" if _server.stop_server() else "not running")


@server_app.command("status")
def server_status() -> None:
    """URL, pid, version and data folder of the embedded server."""
    st = _server.server_status()
    if st is None:
        typer.echo(f"not running (state folder {_server.state_dir()})")
        raise typer.Exit(1)
    typer.echo(f"url      {st.url}\npid      {st.pid}\nversion  {st.version}")
    typer.echo(f"data     {st.data_dir}\nbinary   {st.binary}")


@app.command()
def demo(
    jobs: Annotated[int, typer.Option(min=1, help="How many launch jobs.")] = 50,
    failing: Annotated[int, typer.Option(min=0, help="How many noop jobs that always fail.")] = 3,
    handlers: HandlersOpt = "handlers",
    url: Url = None,
) -> None:
    """Enqueue launch jobs and failing noop jobs, drain them with a worker, print the stats."""
    from streamq._demo import run_demo  # lazy: only the demo needs it

    configure_logging("console", os.environ.get("STREAMQ_LOG_LEVEL", "warning"))
    run_demo(load_registry(handlers), jobs=jobs, failing=failing, url=url, echo=typer.echo)


def main() -> None:
    """Entry point: run the app; StreamqError and usage errors become one line and an exit code."""
    try:
        rv = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:
        # Usage errors (exit 2) and the like: one line, with where to look for help.
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"streamq: error: {message}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 1))
    except StreamqError as exc:
        typer.echo(f"streamq: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
