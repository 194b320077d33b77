"""Flask with streamq under gunicorn: one SyncQueue per process, built at import.

Run from the repository root (``pip install flask gunicorn``)::

    STREAMQ_REDIS_URL=redis://127.0.0.1:6379/0 \\
        gunicorn --preload -w 4 -b 127.0.0.1:8000 --chdir docs/examples flask_app:app
    streamq consume launch          # a worker, in another shell

    curl -si -X POST localhost:8000/reservations -H 'content-type: application/json' \\
        -d '{"account_id": 42, "provider": "aws", "reservation_id": 7, "pubkey": "ssh-ed25519 A"}'
    curl -s localhost:8000/jobs/launch/<the job_id it answered>

``--preload`` imports this module once, in gunicorn's master, before it forks the workers: the
SyncQueue below (its loop thread, and the connection the start-up check opens) is made there.
A thread and sockets do not survive a fork usefully, so a SyncQueue notices it is in a new
process at its first call and builds its own loop and connections there, leaving the parent's
alone. Nothing to do in ``post_fork``; a view just calls ``queue``. Without ``--preload`` each
worker imports the module itself, which works the same.

The registry makes the SyncQueue check the args against the job type at enqueue: a body that
does not fit ``LaunchArgs`` is refused with :class:`~streamq.InvalidJobError` (here a 422) and
never reaches a worker.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request, url_for

from handlers import registry
from streamq import InvalidJobError, Job, SyncQueue

# STREAMQ_REDIS_URL and STREAMQ_PREFIX, as `streamq consume` reads them. `timeout` bounds each
# call, so that a stalled server costs a request 5 seconds, not a gunicorn worker forever.
queue = SyncQueue.from_url(registry=registry, timeout=5.0)
# Fail at boot, in the master, if the server is not there: gunicorn then exits with the error
# instead of starting workers that fail every request.
queue.stats(["launch"])

app = Flask(__name__)


@app.post("/reservations")
def create_reservation() -> Any:
    """Enqueue a ``launch`` job from the JSON body; 202 with its id, 422 for a bad body."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="expected a JSON object"), 422
    account_id = body.pop("account_id", None)
    if not isinstance(account_id, int) or isinstance(account_id, bool) or account_id < 1:
        return jsonify(error="account_id must be a positive integer"), 422
    try:
        job_id = queue.enqueue(Job(type="launch", args=body, account_id=account_id))
    except InvalidJobError as exc:
        return jsonify(error=str(exc)), 422
    url = url_for("job_status", type="launch", job_id=job_id)
    return jsonify(job_id=job_id, type="launch", status_url=url), 202, {"Location": url}


@app.get("/jobs/<type>/<job_id>")
def job_status(type: str, job_id: str) -> Any:
    """Where the job is now (docs/job-state.md); 404 when unknown."""
    state = queue.job(type, job_id)
    if state.state == "unknown":
        return jsonify(error=f"no {type} job {job_id}"), 404
    ended = state.ended_at.isoformat() if state.ended_at else None
    return jsonify(
        job_id=job_id,
        type=type,
        state=state.state,
        deliveries=state.deliveries,
        last_error=state.last_error,
        ended_at=ended,
    )
