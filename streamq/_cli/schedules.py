"""``schedules``: the periodic jobs the handlers module declares, with their last and next tick."""

from __future__ import annotations

import time

import typer

from streamq._cli._app import (
    HandlersOpt,
    JsonOpt,
    Prefix,
    Url,
    app,
    emit_json,
    load_registry,
    open_queue,
    run,
)
from streamq._views import schedule_json, schedules_table


@app.command()
def schedules(
    as_json: JsonOpt = False,
    handlers: HandlersOpt = "handlers",
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Periodic jobs declared in the handlers module (registry.every, registry.cron): type,
    when, the last tick that fired (read from the server) and the next.

    Example: streamq schedules --handlers myapp.jobs --json
    """
    declared = load_registry(handlers).schedules()

    async def main() -> dict[str, int | None]:
        if not declared:
            return {}
        async with open_queue(url, prefix) as q:
            return await q.last_ticks(declared)

    last = run(main())
    now_ms = int(time.time() * 1000)
    docs = [schedule_json(s, last.get(s.name), now_ms) for s in declared]
    if as_json:
        emit_json(docs)
        return
    typer.echo(f"{len(docs)} schedule(s)")
    if docs:
        typer.echo(schedules_table(docs))
