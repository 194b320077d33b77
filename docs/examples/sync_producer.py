"""A sync producer, the way a Flask or Django view enqueues work: one ``noop`` job, print its id.

Run from the repository root::

    STREAMQ_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python docs/examples/sync_producer.py

The job waits in the stream until a worker serves ``noop``, e.g. ``streamq consume noop``.
"""

from __future__ import annotations

from handlers import registry
from handlers.noop import NoopArgs
from streamq import Job, Principal, SyncQueue


def main() -> None:
    """Enqueue one job and print its id."""
    # SyncQueue runs its own event loop in a thread. A web app builds one at start-up and shares
    # it between requests; here it lives for one job. from_url reads STREAMQ_REDIS_URL (else the
    # embedded server) and STREAMQ_PREFIX. With the registry, bad args fail here, in the request,
    # instead of in a worker later.
    with SyncQueue.from_url(registry=registry) as queue:
        job_id = queue.enqueue(
            Job(
                type="noop",
                args=NoopArgs(sleep=0.01),
                account_id=42,
                identity=Principal(account_number="5678", org_id="1234", user="alice"),
                request_id="req-0001",
            )
        )
    print(job_id)


if __name__ == "__main__":
    main()
