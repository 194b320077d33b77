"""``job TYPE ID``: where one job is and what it is doing (docs/job-state.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamq._cli._app import JsonOpt, Prefix, Url, app, emit_json, open_queue, run
from streamq._views import job_state_json, job_state_text


@app.command()
def job(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    job_id: Annotated[str, typer.Argument(help="The job's id.", show_default=False)],
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Where the job JOB_ID of TYPE is: scheduled (due at), waiting, running (consumer, idle,
    deliveries), retrying (next attempt, last error), dead (reason, last error) or unknown
    (never seen, or finished: finished jobs leave no record yet). Then the job itself, its
    identity's user masked.

    Exits 0 whatever the state, unknown included. The lookup walks the type's streams in
    calls of 1000 entries (about 1.5 ms of the server's time each; docs/job-state.md).

    Example: streamq job launch 5f0c...-... --json
    """

    async def main() -> dict[str, Any]:
        async with open_queue(url, prefix) as q:
            return job_state_json(await q.job(type, job_id))

    doc = run(main())
    if as_json:
        emit_json(doc)
    else:
        typer.echo(job_state_text(doc))
