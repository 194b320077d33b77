"""FastAPI with streamq: a lifespan owns the Queue; a POST enqueues a job, a GET says where it is.

Run from the repository root (``pip install fastapi uvicorn``)::

    STREAMQ_REDIS_URL=redis://127.0.0.1:6379/0 \\
        uvicorn --app-dir docs/examples fastapi_app:app --port 8000
    streamq consume launch          # a worker, in another shell

    curl -si -X POST localhost:8000/reservations -H 'content-type: application/json' \\
        -d '{"provider": "aws", "reservation_id": 7, "pubkey": "ssh-ed25519 AAAA", "amount": 2}'
    curl -s localhost:8000/jobs/launch/<the job_id it answered>

One Queue per process, made when the app starts and closed when it stops: it holds the
connection pool, so a request never pays for a connection, and nothing leaks when uvicorn
reloads. With several uvicorn workers (``--workers N``) each process runs the lifespan: one
Queue each, as it should be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

from handlers import registry
from handlers.launch import LaunchArgs
from streamq import Job, Queue


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the Queue at start-up, close it (and its connections) at shutdown."""
    # from_url reads STREAMQ_REDIS_URL and STREAMQ_PREFIX, as `streamq consume` does. With the
    # registry, args that do not fit the job type are refused here, not in a worker later.
    async with Queue.from_url(registry=registry) as queue:
        app.state.queue = queue
        yield


app = FastAPI(title="reservations", lifespan=lifespan)


def get_queue(request: Request) -> Queue:
    """The app's Queue, for the routes (a dependency, so a test can swap it)."""
    queue: Queue = request.app.state.queue
    return queue


QueueDep = Annotated[Queue, Depends(get_queue)]


class Reservation(BaseModel):
    """The request body: what to launch, checked before anything is enqueued (else 422)."""

    account_id: int = Field(gt=0)
    provider: Literal["aws", "azure", "gcp"]
    reservation_id: int = Field(gt=0)
    pubkey: str = Field(min_length=1, max_length=16_384)
    amount: int = Field(default=1, ge=1, le=100)
    instance_type: str = "t3.small"


class Accepted(BaseModel):
    """The answer to a POST: the job's id and where to ask about it."""

    job_id: str
    type: str
    status_url: str


class JobStatus(BaseModel):
    """The answer to a GET: where the job is (docs/job-state.md says what each state means)."""

    job_id: str
    type: str
    state: str
    deliveries: int | None = None
    due_at: datetime | None = None
    last_error: str | None = None
    reason: str | None = None
    ended_at: datetime | None = None


@app.post("/reservations", status_code=202)
async def create_reservation(body: Reservation, queue: QueueDep, response: Response) -> Accepted:
    """Enqueue a ``launch`` job for the reservation; 202: it runs later, in a worker."""
    args = LaunchArgs(
        provider=body.provider,
        reservation_id=body.reservation_id,
        pubkey=body.pubkey,
        amount=body.amount,
        instance_type=body.instance_type,
    )
    job_id = await queue.enqueue(Job(type="launch", args=args, account_id=body.account_id))
    url = app.url_path_for("job_status", type="launch", job_id=job_id)
    response.headers["Location"] = url
    return Accepted(job_id=job_id, type="launch", status_url=url)


@app.get("/jobs/{type}/{job_id}")
async def job_status(type: str, job_id: str, queue: QueueDep) -> JobStatus:
    """Where the job is now: waiting, running, retrying, done, dead...; 404 when unknown."""
    state = await queue.job(type, job_id)
    if state.state == "unknown":
        # Never enqueued, of another type, or its done record expired (keep_done, 24 h).
        raise HTTPException(status_code=404, detail=f"no {type} job {job_id}")
    fields: dict[str, Any] = {name: getattr(state, name) for name in JobStatus.model_fields}
    return JobStatus(**fields)
