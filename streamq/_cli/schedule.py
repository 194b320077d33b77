"""``scheduled``: the delayed jobs and waiting retries of a type, in its schedule."""

from __future__ import annotations

from typing import Annotated

import typer

from streamq._cli._app import JsonOpt, Prefix, Url, app, emit_json, open_queue, run
from streamq._inspect import ScheduledJob
from streamq._views import scheduled_json, scheduled_table


@app.command()
def scheduled(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """The jobs of TYPE waiting in its schedule, the soonest due first: job id, due at (UTC),
    due in, why it waits (delay, or retry after a failure), deliveries so far, last error.

    Example: streamq scheduled launch --json
    """

    async def main() -> tuple[list[ScheduledJob], int]:
        async with open_queue(url, prefix) as q:
            rows = await q.scheduled(type, limit=limit)
            (stats,) = await q.stats([type])
            return rows, stats.scheduled

    rows, total = run(main())
    if as_json:
        emit_json([scheduled_json(r) for r in rows])
    else:
        typer.echo(scheduled_table(rows, max(total, len(rows))))
