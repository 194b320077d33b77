"""``job TYPE ID``: where one job is and what it is doing (docs/job-state.md); ``cancel TYPE ID``
(docs/control.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamq._cli._app import JsonOpt, Prefix, Url, app, emit_json, fail, open_queue, run
from streamq._views_job import job_state_json, job_state_text


@app.command()
def job(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    job_id: Annotated[str, typer.Argument(help="The job's id.", show_default=False)],
    as_json: JsonOpt = False,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Where the job JOB_ID of TYPE is: scheduled (due at), waiting, running (consumer, idle,
    deliveries), retrying (next attempt, last error), dead (reason, last error), done (finished:
    when, how long, deliveries), cancelled, or unknown (never seen, or its record expired).
    Then the job itself (while it is in the type's keys), its identity's user masked.

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


@app.command()
def cancel(
    type: Annotated[str, typer.Argument(help="Job type.", show_default=False)],
    job_id: Annotated[str, typer.Argument(help="The job's id.", show_default=False)],
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Cancel the job JOB_ID of TYPE. A scheduled or waiting job is removed now (its unique key
    released; `streamq job` answers cancelled for a day). A running job is cancelled by the
    worker running it within about a second (its task is cancelled at its next await; a sync
    step sees ctx.cancelled set), then acknowledged and recorded as cancelled: not retried,
    not dead-lettered. Prints one line.

    Exits 0 when the job was cancelled, is being cancelled, or was already; 1 when there was
    nothing to cancel: the job is dead, done (finished), or unknown (never enqueued, or its
    record expired).

    Example: streamq cancel launch 5f0c...-...
    """

    async def main() -> Any:
        async with open_queue(url, prefix) as q:
            return await q.cancel(type, job_id)

    result = run(main())
    if result.state == "cancelled":
        typer.echo(f"{job_id} was cancelled already" if result.already else f"cancelled {job_id}")
    elif result.state == "cancelling":
        typer.echo(
            f"cancelling {job_id}: running on {result.consumer}, which stops it within about "
            "a second"
        )
    elif result.state == "dead":
        fail(f"{job_id} is dead (nothing to cancel; `streamq dead retry` or purge it)", 1)
    elif result.state == "done":
        fail(f"{job_id} is done (it finished: nothing to cancel)", 1)
    else:
        fail(
            f"no job {job_id} of {type} to cancel (never enqueued, or finished and its record "
            "expired)",
            1,
        )
