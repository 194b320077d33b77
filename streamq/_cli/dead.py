"""``dead list|show|retry|purge``: inspect and re-drive dead-lettered jobs."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from streamq._cli._app import JsonOpt, Prefix, Url, emit_json, fail, open_queue, run
from streamq._views import age, dead_json, table
from streamq.backends._base import DeadEntry

dead_app = typer.Typer(help="Inspect and re-drive dead-lettered jobs.", no_args_is_help=True)

TypeArg = Annotated[str, typer.Argument(help="Job type.", show_default=False)]


@dead_app.command("list")
def dead_list(
    type: TypeArg,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Dead-lettered jobs of TYPE, oldest first: job id, deliveries, age, reason.

    Example: streamq dead list launch
    """

    async def main() -> list[DeadEntry]:
        async with open_queue(url, prefix) as q:
            return await q.dead(type, limit=limit)

    rows = run(main())
    if as_json:
        emit_json([dead_json(d) for d in rows])
        return
    now = time.time()
    typer.echo(f"{len(rows)} dead")
    if rows:
        body = [
            [d.job_id or "?", str(d.deliveries), age(now - d.dead_at), d.reason[:80]] for d in rows
        ]
        typer.echo(table(["job id", "deliveries", "dead for", "reason"], body))


@dead_app.command("show")
def dead_show(
    type: TypeArg,
    job_id: Annotated[str, typer.Argument(help="The dead job's id.", show_default=False)],
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """The reason, last error, deliveries and the job itself of one dead job.

    Example: streamq dead show launch 5f0c...-...
    """

    async def main() -> list[DeadEntry]:
        async with open_queue(url, prefix) as q:
            return await q.dead(type, limit=1_000_000)

    found = [d for d in run(main()) if d.job_id == job_id]
    if not found:
        fail(f"no dead job {job_id!r} of type {type!r}")
    d = found[-1]
    if as_json:
        emit_json(dead_json(d, full=True))
        return
    info = dead_json(d, full=True)
    for key in ("job_id", "reason", "error", "deliveries", "entry_id"):
        typer.echo(f"{key:<11} {info[key]}")
    typer.echo(f"{'dead at':<11} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.dead_at))}")
    for key, value in info["job"].items():
        typer.echo(f"{key:<11} {value}")


@dead_app.command("retry")
def dead_retry(
    type: TypeArg,
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead job ids.", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead job of TYPE.")] = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Put dead jobs back on the queue with their ids and a fresh delivery count.

    Example: streamq dead retry launch --all
    """
    if bool(job_ids) == all_:
        fail("give either JOB_ID... or --all", 2)

    async def main() -> list[str]:
        async with open_queue(url, prefix) as q:
            return await q.retry_dead(type, None if all_ else job_ids)

    done = run(main())
    missing = sorted(set(job_ids or ()) - set(done))
    typer.echo(f"retried {len(done)} job(s) of {type}")
    for job_id in done:
        typer.echo(job_id)
    if missing:
        fail(f"not in the dead stream of {type!r}: {', '.join(missing)}")


@dead_app.command("purge")
def dead_purge(
    type: TypeArg,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete them.")] = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Delete every dead-lettered job of TYPE (asks for --yes).

    Example: streamq dead purge noop --yes
    """
    if not yes:
        fail(f"this deletes every dead job of {type!r}; add --yes to do it", 2)

    async def main() -> int:
        async with open_queue(url, prefix) as q:
            return await q.purge_dead(type)

    typer.echo(f"purged {run(main())} dead job(s) of {type}")
