"""``workers`` and ``server``: who is consuming, and the embedded server."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from streamq import _server
from streamq._cli._app import JsonOpt, Prefix, Url, app, emit_json, open_queue, run
from streamq._views import age, concurrency_text, table, workers_doc

server_app = typer.Typer(
    help="The embedded server (used when STREAMQ_REDIS_URL is not set).", no_args_is_help=True
)


@app.command()
def workers(
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Remove consumers with no live worker and no jobs in flight."),
    ] = False,
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Live workers from their heartbeats: consumer, host, pid, types, concurrency, in flight,
    processed, last heartbeat age. A child of ``consume -p`` shows its pid as
    ``PID (SUPERVISOR/INDEX)``.

    Example: streamq workers --prune
    """

    async def main() -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
        async with open_queue(url, prefix) as q:
            removed = await q.prune_consumers() if prune else []
            return await q.workers(), removed

    live, removed = run(main())
    doc = workers_doc(live, removed, time.time())
    rows = doc["workers"]
    if as_json:
        emit_json(doc)
        return
    typer.echo(f"{len(rows)} live worker(s)")
    if rows:
        body = [
            [
                r["consumer"],
                r["host"],
                str(r["pid"])
                if r["supervisor_pid"] is None
                else f"{r['pid']} ({r['supervisor_pid']}/{r['child_index']})",
                ",".join(r["types"]),
                concurrency_text(r),
                str(r["in_flight"]),
                str(r["processed"]),
                age(r["heartbeat_age_s"]),
            ]
            for r in rows
        ]
        headers = ["consumer", "host", "pid", "types", "concurrency", "in flight", "processed"]
        typer.echo(table([*headers, "heartbeat"], body))
    if prune:
        typer.echo(f"pruned {len(removed)} consumer(s)")
        for t, c in removed:
            typer.echo(f"  {t}: {c}")


@server_app.command("start")
def server_start() -> None:
    """Start the embedded server (or find it running) and print its URL.

    Example: streamq server start
    """
    typer.echo(_server.ensure_server())


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded server; its data stays in the state folder.

    Example: streamq server stop
    """
    typer.echo("stopped" if _server.stop_server() else "not running")


@server_app.command("status")
def server_status() -> None:
    """URL, pid, version and data folder of the embedded server (exit 1 if not running).

    Example: STREAMQ_STATE_DIR=/tmp/sq streamq server status
    """
    st = _server.server_status()
    if st is None:
        typer.echo(f"not running (state folder {_server.state_dir()})")
        raise typer.Exit(1)
    typer.echo(f"url      {st.url}\npid      {st.pid}\nversion  {st.version}")
    typer.echo(f"data     {st.data_dir}\nbinary   {st.binary}")
