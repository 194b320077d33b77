"""``enqueue``, ``stats``, ``pending``, ``recover``: jobs in and what is in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from streamq._cli._app import (
    HandlersOpt,
    JsonOpt,
    Prefix,
    Url,
    app,
    emit_json,
    fail,
    load_registry,
    open_queue,
    parse_duration,
    run,
)
from streamq._inspect import PendingJob, TypeStats
from streamq._job import Job, Principal
from streamq._views import (
    age,
    by_priority_line,
    keys_json,
    keys_table,
    pending_json,
    recover_doc,
    stats_json,
    stats_table,
    table,
)
from streamq.backends._priority import PRIORITIES
from streamq.exceptions import ConfigError, InvalidJobError, JobTooLargeError

#: enqueue --count at or above this shows a progress bar (on a terminal).
PROGRESS_FROM = 5_000
ENQUEUE_CHUNK = 1_000


def _read_args(text: str) -> Any:
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            fail(f"cannot read args file {text[1:]!r}: {exc.strerror}", 2)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--args is not valid JSON: {exc}", 2)
    if not isinstance(value, dict):
        fail(f"--args must be a JSON object, not {type(value).__name__}", 2)
    return value


def parse_time(text: str, flag: str = "--at") -> datetime:
    """An ISO 8601 time with its time zone (``Z`` for UTC); a usage error otherwise."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{flag} {text!r} is not an ISO time (example: 2026-12-24T18:00:00Z)", 2)
    if when.tzinfo is None:
        fail(f"{flag} {text!r} has no time zone (add Z for UTC, or +01:00)", 2)
    return when


def parse_deadline(text: str) -> float | datetime:
    """``--expires``: a duration from now (``10m``) or an ISO time with its zone."""
    if any(c in text for c in "T:") or text.count("-") >= 2:
        return parse_time(text, "--expires")
    return parse_duration(text)


@app.command()
def enqueue(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    args: Annotated[str, typer.Option("--args", help="JSON object, or @file.json.")] = "{}",
    account_id: Annotated[int, typer.Option(help="The account the job acts for.")] = 0,
    org_id: Annotated[str, typer.Option(help="The caller's org id (identity).")] = "",
    account_number: Annotated[
        str, typer.Option(help="The caller's account number (identity).")
    ] = "",
    request_id: Annotated[
        str | None, typer.Option(help="Correlation id of the request that asked for it.")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Enqueue this many copies.")] = 1,
    delay: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Run them no earlier than this long from now."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            metavar="TIME", help="Run them no earlier than this ISO time (2026-12-24T18:00:00Z)."
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION|TIME",
            help="Their deadline (10m, or an ISO time): not started by then, they go to the "
            "dead stream as expired.",
        ),
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            help="At most one job with this key at a time: while one is scheduled, waiting, "
            "running or retrying, print its id (and 'duplicate' on stderr) instead."
        ),
    ] = None,
    unique_for: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Keep the --unique-key this long after the job ended."
        ),
    ] = None,
    priority: Annotated[
        str,
        typer.Option(
            metavar="LEVEL",
            help="high, default or low: workers take higher levels first (a lower level "
            "with jobs waiting still gets 1 of every 10 slots).",
        ),
    ] = "default",
    handlers: HandlersOpt = "handlers",
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Enqueue COUNT jobs of TYPE and print their ids, one per line.

    The args are checked against the type's args class first: a bad field is a one-line
    error (exit 2) and nothing is enqueued. Large counts are pipelined in chunks.

    With --delay or --at they wait in the type's schedule until then (streamq scheduled TYPE
    lists them); a worker of the type moves them into the stream when they are due.

    Example: streamq enqueue noop --args '{"sleep": 0.1}' --count 100 --delay 30s
    """
    if delay is not None and at is not None:
        fail("give --delay or --at, not both", 2)
    delay_s = None if delay is None else parse_duration(delay)
    at_time = None if at is None else parse_time(at)
    deadline = None if expires is None else parse_deadline(expires)
    keep = None if unique_for is None else parse_duration(unique_for)
    if unique_for is not None and unique_key is None:
        fail("--unique-for needs --unique-key", 2)
    if unique_key is not None and count > 1:
        fail("--unique-key enqueues one job: it cannot go with --count", 2)
    if priority not in PRIORITIES:
        fail(f"unknown --priority {priority!r}: expected one of {', '.join(PRIORITIES)}", 2)
    registry = load_registry(handlers)
    if type not in registry:
        fail(f"no handler registered for {type} in module {handlers!r}", 2)
    raw = _read_args(args)
    identity = Principal(account_number=account_number, org_id=org_id)
    jobs = [
        Job(type=type, args=raw, account_id=account_id, identity=identity, request_id=request_id)
        for _ in range(count)
    ]
    queue = open_queue(url, prefix, registry)

    async def main() -> list[str]:
        ids: list[str] = []
        show = count >= PROGRESS_FROM and sys.stdout.isatty()
        if unique_key is not None:
            async with queue:
                job_id = await queue.enqueue(
                    jobs[0],
                    delay=delay_s,
                    at=at_time,
                    expires=deadline,
                    unique_key=unique_key,
                    unique_for=keep,
                    priority=priority,
                )
            if job_id.duplicate:
                typer.echo(f"duplicate: a job with unique key {unique_key!r} exists", err=True)
            return [job_id]
        async with queue:
            with Progress(transient=True, disable=not show) as progress:
                task = progress.add_task(f"enqueue {type}", total=count)
                for i in range(0, count, ENQUEUE_CHUNK):
                    chunk = jobs[i : i + ENQUEUE_CHUNK]
                    ids += await queue.enqueue_many(
                        chunk, delay=delay_s, at=at_time, expires=deadline, priority=priority
                    )
                    progress.advance(task, len(jobs[i : i + ENQUEUE_CHUNK]))
        return ids

    try:
        ids = run(main())
    except (InvalidJobError, JobTooLargeError, ConfigError) as exc:
        # enqueue_many checks every job of a chunk before sending it, and all copies are
        # alike: a bad job fails the first chunk, so nothing was enqueued.
        fail(str(exc), 2)
    typer.echo("\n".join(ids))


@app.command()
def stats(
    types: Annotated[
        list[str] | None,
        typer.Argument(help="Job types (default: every type on the server).", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
    watch: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Redraw every DURATION until Ctrl-C."),
    ] = None,
    keys: Annotated[
        str | None,
        typer.Option(
            "--keys",
            metavar="TYPE",
            help="Instead: the busiest key values of TYPE (a type with a per-key limit), with "
            "their jobs running and held.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="With --keys: show at most this many.")] = 10,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """One row per type: waiting, scheduled (delayed, not due yet), held (by a per-key limit
    or a rate), in flight (the PEL, across all workers), oldest in flight, dead, processed,
    failed, retried, cancelled, consumers, and paused (for how long, when `streamq pause`
    paused it).

    Example: streamq stats launch --watch 2

    With --keys TYPE, instead: the busiest key values of a type with a per-key limit, with
    their jobs running and held (e.g. streamq stats --keys launch).
    """
    every = None if watch is None else max(0.1, parse_duration(watch))
    queue = open_queue(url, prefix)
    if keys is not None:
        if types or every is not None:
            fail("--keys TYPE takes no other types and no --watch", code=2)

        async def busiest() -> None:
            async with queue:
                loads = await queue.keys(keys, limit)
            if as_json:
                emit_json([keys_json(k) for k in loads])
            else:
                typer.echo(keys_table(keys, loads))

        run(busiest())
        return

    async def snapshot() -> list[TypeStats]:
        return await queue.stats(types or await queue.types())

    async def once() -> None:
        async with queue:
            result = await snapshot()
        if as_json:
            emit_json([stats_json(s) for s in result])
        else:
            typer.echo(stats_table(result) if result else "no job types on this server yet")

    async def live() -> None:
        console = Console()
        async with queue:
            while True:
                result = await snapshot()
                stamp = time.strftime("%H:%M:%S")
                console.clear()
                typer.echo(f"streamq stats  every {every}s  {stamp}  (Ctrl-C to stop)\n")
                typer.echo(stats_table(result) if result else "no job types on this server yet")
                await asyncio.sleep(every or 1.0)

    if every is None:
        run(once())
        return
    with contextlib.suppress(KeyboardInterrupt):
        run(live())


def pending_table(rows: list[PendingJob], stats: TypeStats | None = None) -> str:
    """Jobs in flight, under a header with the total and the count per consumer (from the
    group's own counts when ``stats`` is given, so it holds beyond --limit)."""
    if stats is not None:
        total = stats.in_flight
        per = {c: s.in_flight for c, s in stats.consumers.items() if s.in_flight}
    else:
        total, per = len(rows), {}
        for r in rows:
            per[r.consumer] = per.get(r.consumer, 0) + 1
    head = f"{total} in flight" + "".join(f"; {c}: {n}" for c, n in sorted(per.items()))
    if len(rows) < total:
        head += f" (showing the {len(rows)} idle longest)"
    # A type given a priority: the waiting jobs per level, and each job's level.
    levels = bool(stats and stats.waiting_by_priority) or any(r.priority != "default" for r in rows)
    if stats is not None and stats.waiting_by_priority:
        head += "\n" + by_priority_line(stats.waiting_by_priority)
    if not rows:
        return head
    headers = ["job id", "entry id", "consumer", "idle", "deliveries"]
    body = [
        [r.job_id or "?", r.entry_id, r.consumer, age(r.idle_s), str(r.deliveries)] for r in rows
    ]
    if levels:
        headers.append("priority")
        for line, r in zip(body, rows, strict=True):
            line.append(r.priority)
    return head + "\n" + table(headers, body)


@app.command()
def pending(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's jobs.")] = None,
    min_idle: Annotated[
        str, typer.Option(metavar="DURATION", help="Only jobs idle this long.")
    ] = "0",
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """The jobs of TYPE in flight, longest idle first: job id, entry id, consumer, idle time,
    deliveries (from XPENDING).

    Example: streamq pending launch --min-idle 5m
    """
    idle = parse_duration(min_idle)

    async def main() -> tuple[list[PendingJob], TypeStats]:
        async with open_queue(url, prefix) as q:
            rows = await q.pending(type, consumer=consumer, min_idle=idle, limit=limit)
            (stats,) = await q.stats([type])
            return rows, stats

    rows, stats = run(main())
    if as_json:
        emit_json([pending_json(r) for r in rows])
    else:
        filtered = consumer is not None or idle > 0
        typer.echo(pending_table(rows, None if filtered else stats))


@app.command()
def recover(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    min_idle: Annotated[
        str, typer.Option(metavar="DURATION", help="Hand back jobs idle at least this long.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list them.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Hand back at most this many.")] = 10_000,
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Hand jobs in flight for at least --min-idle back for delivery now, without waiting
    for a worker's recovery pass. Each goes to the end of the stream with a fresh delivery
    count; if its old worker is in fact still running it, the job may run twice.

    Example: streamq recover launch --min-idle 10m --dry-run
    """
    idle = parse_duration(min_idle)

    async def main() -> list[PendingJob]:
        async with open_queue(url, prefix) as q:
            return await q.recover(type, min_idle=idle, dry_run=dry_run, limit=limit)

    moved = run(main())
    if as_json:
        emit_json(recover_doc(moved, dry_run=dry_run))
        return
    verb = "would hand back" if dry_run else "handed back"
    typer.echo(f"{verb} {len(moved)} job(s) of {type}")
    if moved:
        typer.echo(pending_table(moved).split("\n", 1)[1])
