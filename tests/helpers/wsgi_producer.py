"""A tiny WSGI app for the pre-fork tests: a module-level SyncQueue enqueues one job per request.

gunicorn ``--preload`` imports this module in its master process, so the SyncQueue (and its
loop thread and connections, after the stats call below) is built before the workers fork.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from streamq import Job, SyncQueue

queue = SyncQueue.from_url(os.environ["STREAMQ_REDIS_URL"], prefix=os.environ["STREAMQ_PREFIX"])
# A call in the master: its connection exists when the workers fork, as in an app that checks
# its queue at start-up.
MASTER_PID = os.getpid()
queue.stats(["noop"])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Enqueue one noop job; answer its id and the worker's pid as JSON."""
    job_id = queue.enqueue(Job(type="noop", args={}))
    body = json.dumps({"job_id": job_id, "pid": os.getpid(), "master": MASTER_PID}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
