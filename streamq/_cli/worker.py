"""``consume`` and ``demo``: the commands that run a worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from streamq._cli._app import (
    HandlersOpt,
    Prefix,
    Url,
    app,
    configure_logging,
    fail,
    load_registry,
    parse_duration,
    resolve,
    run,
)
from streamq._eventloop import tune_gc
from streamq._flow import describe as describe_flow
from streamq._logging import logger
from streamq._otel_setup import (
    METRICS_EXTRA,
    PrometheusEndpoint,
    configure_from_env,
    metrics_extra_missing,
)
from streamq._settings import connect, redact_url
from streamq._worker import Worker
from streamq._worker.health import BEATS, read_health
from streamq._worker.type_caps import describe
from streamq.backends._base import KEEP_DONE_MAX
from streamq.exceptions import ConfigError


@app.command()
def consume(
    types: Annotated[
        list[str],
        typer.Argument(
            metavar="TYPE[=N]",
            help="Job types to serve; TYPE=N: at most N jobs of that type at once.",
            show_default=False,
        ),
    ],
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            help="Jobs run at once in all. Default: 32; the sum of the caps when every type "
            "has one; with caps for some, 32 or their sum, whichever is more.",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            help="Run this many worker processes under a supervisor that restarts one "
            "that dies and forwards signals (each its own consumer).",
        ),
    ] = 1,
    handlers: HandlersOpt = "handlers",
    claim_after: Annotated[
        str,
        typer.Option(metavar="DURATION", help="Take over jobs of workers silent this long."),
    ] = "60s",
    heartbeat: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Lease and heartbeat refresh (≤ claim-after/2). "
            "Default: claim-after/3, at most 10s.",
            show_default=False,
        ),
    ] = None,
    max_deliveries: Annotated[
        int, typer.Option(min=1, help="Deliveries before a failing job goes to dead.")
    ] = 5,
    job_timeout: Annotated[
        str, typer.Option(metavar="DURATION", help="Default time limit of one delivery.")
    ] = "30m",
    shutdown_grace: Annotated[
        str, typer.Option(metavar="DURATION", help="Time running jobs get after a signal.")
    ] = "30s",
    retry_base: Annotated[
        str, typer.Option(metavar="DURATION", help="First retry backoff; doubles per delivery.")
    ] = "1s",
    retry_max: Annotated[
        str, typer.Option(metavar="DURATION", help="The longest retry backoff.")
    ] = "1h",
    keep_done: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="How long a finished job's record is kept (streamq job says done); 0: none.",
        ),
    ] = "24h",
    keep_done_max: Annotated[
        int, typer.Option(min=1, help="The most finished-job records kept per type.")
    ] = KEEP_DONE_MAX,
    log_format: Annotated[
        str, typer.Option(help="console or json (default: console on a terminal, else json).")
    ] = "",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve this worker's metrics for Prometheus on this port (GET /metrics; "
            "0: any free port, said in the start-up line). Needs the metrics extra.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(help="The address --metrics-port listens on (0.0.0.0: every interface)."),
    ] = "127.0.0.1",
    health_file: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Touch PATH every heartbeat while running, whether or not the server "
            "answers: for a liveness probe (streamq health PATH).",
            show_default=False,
        ),
    ] = None,
    url: Url = None,
    prefix: Prefix = "streamq",
    *,
    ctx: typer.Context,
) -> None:
    """Run a worker for TYPES until SIGTERM or SIGINT (a second signal stops at once).

    On a signal it stops reading, lets running jobs finish within --shutdown-grace, then
    cancels the rest and hands them back to other workers.

    With TYPE=N a type holds at most N of the worker's slots (running or awaiting their
    ack), so that one slow type cannot take them all; the types without a cap share the
    rest.

    With -p N a supervisor runs N such workers, each its own process and consumer: it
    restarts one that dies (with a backoff), forwards SIGTERM/SIGINT to all and exits 0
    when every one drained. Child i gets --metrics-port PORT+i-1 and --health-file PATH.i;
    the supervisor touches PATH while every child's file is fresh.

    Example: streamq consume launch=8 noop -c 64 --claim-after 2m
    """
    fmt = log_format or ("console" if sys.stderr.isatty() else "json")
    if fmt not in ("console", "json"):
        fail(f"--log-format must be console or json, not {fmt!r}", 2)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level must be debug, info, warning or error, not {log_level!r}", 2)
    caps = parse_caps(types)
    types = list(dict.fromkeys(t.partition("=")[0] for t in types))
    registry = load_registry(handlers)
    missing = [t for t in types if t not in registry]
    if missing:
        fail(f"no handler registered for {', '.join(missing)} in module {handlers!r}", 2)
    durations = [
        parse_duration(d)
        for d in (claim_after, job_timeout, shutdown_grace, retry_base, retry_max, keep_done)
    ]
    beat = None if heartbeat is None else parse_duration(heartbeat)
    if beat is not None and beat * 2 > durations[0]:
        fail(
            f"--heartbeat ({heartbeat}) must be at most half of --claim-after ({claim_after}), "
            "or running jobs would be taken over",
            2,
        )
    configure_logging(fmt, log_level)
    endpoint = None if metrics_port is None else PrometheusEndpoint(metrics_host, metrics_port)
    if endpoint is not None and (missing_extra := metrics_extra_missing()):
        fail(
            f"--metrics-port needs the metrics extra ({missing_extra} not found): {METRICS_EXTRA}",
            2,
        )
    if processes > 1 and metrics_port and metrics_port + processes - 1 > 65535:
        fail(f"--metrics-port {metrics_port} leaves no room for {processes} processes' ports", 2)
    if processes == 1:
        # A bad OTEL_* value, or an address that cannot be bound: a ConfigError, exit 1 as for
        # every command (the environment, not the command line, is wrong).
        ctx.call_on_close(configure_from_env(prometheus=endpoint))
    served = "" if endpoint is None else f", metrics at {endpoint.url}"
    # Resolved once, here: with -p the children share this server (the embedded one started
    # and announced once) through STREAMQ_REDIS_URL, never on their command line.
    resolved = resolve(url)
    backend = connect(resolved, prefix=prefix)
    try:
        worker = Worker(
            backend,
            registry,
            types,
            concurrency=concurrency,
            type_concurrency=caps,
            max_deliveries=max_deliveries,
            claim_after=durations[0],
            heartbeat=beat,
            job_timeout=durations[1],
            shutdown_grace=durations[2],
            retry_base=durations[3],
            retry_max=durations[4],
            keep_done=durations[5],
            keep_done_max=keep_done_max,
            health_file=health_file,
        )
    except ConfigError as exc:  # the options contradict each other: a usage error
        fail(str(exc), 2)
    if processes > 1:  # every check above was made once, here, for all the children
        run(backend.aclose())
        supervise(processes, types, durations[2], health_file, metrics_port, resolved)

    kept = (
        f"done jobs kept {keep_done}, max {keep_done_max} per type"
        if worker.keep_done > 0
        else "no done-job records"
    )

    async def main() -> None:
        try:
            # Reach the server before saying we consume from it: if it is down, the one line
            # the user sees is the error.
            await backend.ensure_groups(types)
            # Before the start-up line, not between it and the signal handlers: a SIGTERM
            # sent on seeing that line must find them in place (the collection takes a while).
            tuned = tune_gc()
            per_type = f", at most {describe(caps)}" if caps else ""
            flows = [
                f"{t} {describe_flow(jt.limit, jt.rate)}"
                for t in types
                if (jt := registry.get(t)).limit is not None or jt.rate is not None
            ]
            flow = f", flow control: {'; '.join(flows)}" if flows else ""
            typer.echo(
                f"streamq: consuming {', '.join(types)} from {redact_url(resolved)} "
                f"(concurrency {worker.concurrency}{per_type}{flow}, {kept}{served}, "
                f"consumer {worker.consumer})",
                err=True,
            )
            # Logged after the start-up line (the first line a supervisor or a test reads).
            if tuned is not None:
                logger.info("streamq.worker.gc_tuned", **tuned)
            await worker.run(handle_signals=True)
        finally:
            await backend.aclose()

    run(main())


def supervise(
    n: int,
    types: list[str],
    grace: float,
    health_file: Path | None,
    metrics_port: int | None,
    url: str,
) -> NoReturn:
    """``consume -p N``: run N children of this command line under a Supervisor; exit with
    its code (docs/scaling.md, "Several worker processes")."""
    from streamq._cli.supervisor import Supervisor  # lazy: only -p needs it

    argv = sys.argv[1:]
    ports = (
        ""
        if metrics_port is None
        else (f", metrics ports {metrics_port}-{metrics_port + n - 1}" if metrics_port else "")
    )
    typer.echo(
        f"streamq: supervising {n} worker processes for {', '.join(types)}{ports} "
        f"(supervisor {os.getpid()})",
        err=True,
    )
    supervisor = Supervisor(argv, n, grace=grace, health_file=health_file, url=url)
    raise typer.Exit(supervisor.run())


def parse_caps(args: list[str]) -> dict[str, int]:
    """The ``TYPE=N`` arguments of ``consume`` as {type: N}; a bad one, or a type given twice,
    is a usage error (exit 2)."""
    caps: dict[str, int] = {}
    seen: set[str] = set()
    for arg in args:
        name, eq, n = arg.partition("=")
        if not name:
            fail(f"{arg!r}: expected TYPE or TYPE=N", 2)
        if name in seen:
            fail(f"{name!r} is given twice", 2)
        seen.add(name)
        if not eq:
            continue
        if not (n.isascii() and n.isdigit()) or int(n) < 1:
            fail(f"{arg!r}: the concurrency of {name} must be a whole number ≥ 1 ({name}=8)", 2)
        caps[name] = int(n)
    return caps


@app.command()
def health(
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="The file of consume --health-file.")
    ],
    max_age: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help=f"The oldest the file may be. Default: {BEATS} of the worker's heartbeats "
            "(the file says its heartbeat).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Exit 0 if the worker touched PATH within --max-age, else 1 with one line: a liveness
    probe's command. It reads only the file: a Redis outage does not fail it.

    Example: streamq health /tmp/streamq-worker.health --max-age 30s
    """
    limit = None if max_age is None else parse_duration(max_age)
    if limit is not None and limit <= 0:
        fail(f"--max-age must be positive, not {max_age!r}", 2)
    try:
        found = read_health(path, limit)
    except FileNotFoundError:
        fail(f"{path}: no such file (is the worker running with --health-file {path}?)")
    except (OSError, ValueError) as exc:
        fail(str(exc))
    pid = f"worker {found.pid}, " if found.pid is not None else ""
    if not found.fresh:
        fail(
            f"{path}: last touched {found.age_s:.1f}s ago ({pid}max {found.max_age_s:g}s): "
            "the worker's event loop is stuck or the process is gone"
        )
    typer.echo(
        f"streamq: ok: {path} touched {found.age_s:.1f}s ago ({pid}max {found.max_age_s:g}s)"
    )


@app.command()
def demo(
    jobs: Annotated[int, typer.Option(min=1, help="How many launch jobs.")] = 50,
    failing: Annotated[int, typer.Option(min=0, help="How many noop jobs that always fail.")] = 3,
    # The demo's own job types, shipped inside streamq (the repository's handlers/).
    handlers: HandlersOpt = "streamq._demo_handlers",
    url: Url = None,
) -> None:
    """Enqueue launch jobs and failing noop jobs, drain them with a worker, print the stats.

    Example: streamq demo --jobs 200
    """
    from streamq._demo import run_demo  # lazy: only the demo needs it

    configure_logging("console", os.environ.get("STREAMQ_LOG_LEVEL", "warning"))
    registry = load_registry(handlers)
    run_demo(registry, jobs=jobs, failing=failing, url=resolve(url), echo=typer.echo)
