"""SyncQueue in forked processes: a gunicorn --preload app, multiprocessing fork, timeouts."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import wait_for

from streamq import BackendError, ConfigError, Job, MemoryBackend, Queue, SyncQueue
from streamq._server import PrivateServer, _free_port

# Python 3.12+ warns on fork() in a process with threads (the SyncQueue's loop thread is one):
# forking such a process is exactly what these tests do, on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

REQUESTS = 24


ROOT = Path(__file__).resolve().parents[2]
#: a body the recipe's POST /reservations enqueues (its args fit handlers.launch.LaunchArgs)
RESERVATION = {"account_id": 42, "provider": "aws", "reservation_id": 7, "pubkey": "ssh-ed25519 A"}


def _enqueued(url: str, prefix: str) -> int:
    with SyncQueue.from_url(url, prefix=prefix) as q:
        return int(q.stats(["launch"])[0].enqueued)


def _call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request: (status, the JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@dataclass
class Gunicorn:
    """A running ``gunicorn --preload -w 2`` of docs/examples/flask_app.py."""

    base: str
    #: lines of ``PID METHOD PATH STATUS``, one per request a worker answered
    access_log: Path
    master_pid: int

    def served(self) -> list[tuple[int, str, int]]:
        """(worker pid, request line, status) of every request answered so far."""
        out = []
        for line in self.access_log.read_text().splitlines():
            pid, method, path, status = line.split()
            out.append((int(pid.strip("<>")), f"{method} {path}", int(status)))  # %(p)s: <pid>
        return out


@pytest.fixture
def gunicorn(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Gunicorn]:
    """``gunicorn --preload -w 2`` serving docs/examples/flask_app.py, the documented recipe."""
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    access = tmp_path / "access.log"
    pidfile = tmp_path / "gunicorn.pid"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMQ_")}
    env |= {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_PREFIX": prefix,
        # The application's own handlers/ package, as from the project's folder.
        "PYTHONPATH": str(ROOT),
    }
    args = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}"]
    args += ["--timeout", "60", "--graceful-timeout", "5", "--pid", str(pidfile)]
    args += ["--access-logfile", str(access), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"]
    args += ["--chdir", str(ROOT / "docs" / "examples"), "flask_app:app"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return _call("GET", f"{base}/jobs/launch/none")[0] == 404
        except OSError:
            return False

    try:
        wait_for(up, "gunicorn answering", timeout=30)
        yield Gunicorn(base, access, int(pidfile.read_text()))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_gunicorn_preload_workers_enqueue(gunicorn: Gunicorn, redis_url: str, prefix: str) -> None:
    """The recipe's SyncQueue, built (and used) at import in a gunicorn --preload master, works
    in both forked workers: every POST enqueues its job (no "closed" error, no hang)."""
    before = _enqueued(redis_url, prefix)

    def post(_: int) -> str:
        status, answer = _call("POST", f"{gunicorn.base}/reservations", RESERVATION)
        assert status == 202, answer
        assert answer["status_url"] == f"/jobs/launch/{answer['job_id']}"
        return str(answer["job_id"])

    ids: list[str] = []
    with ThreadPoolExecutor(4) as pool:
        # Until both workers have served (the kernel hands connections to either): at most
        # a few rounds of REQUESTS in practice, never an unbounded loop.
        for _ in range(20):
            ids += pool.map(post, range(REQUESTS))
            if len({pid for pid, what, _ in gunicorn.served() if what.startswith("POST")}) >= 2:
                break

    def logged() -> list[tuple[int, int]]:
        # gunicorn writes the access line after the answer went out: wait for the last ones.
        served = gunicorn.served()
        return [(pid, status) for pid, what, status in served if what.startswith("POST")]

    posts = wait_for(lambda: len(logged()) >= len(ids) and logged(), "every POST logged")
    assert len(posts) == len(ids)
    assert {status for _, status in posts} == {202}
    pids = {pid for pid, _ in posts}
    assert len(pids) == 2, "one worker served every request"
    assert gunicorn.master_pid not in pids, "served by the master itself"
    assert len(set(ids)) == len(ids)
    assert _enqueued(redis_url, prefix) == before + len(ids)
    status, state = _call("GET", f"{gunicorn.base}/jobs/launch/{ids[0]}")
    assert (status, state["state"], state["job_id"]) == (200, "waiting", ids[0])


def test_gunicorn_recipe_refuses_bad_bodies_and_unknown_jobs(
    gunicorn: Gunicorn, redis_url: str, prefix: str
) -> None:
    """The recipe answers 422 for a body that does not fit the job type (nothing enqueued)
    and 404 for a job it does not know."""
    bad = [
        {**RESERVATION, "provider": "ibm"},
        {k: v for k, v in RESERVATION.items() if k != "pubkey"},
        {**RESERVATION, "account_id": "42"},
        ["not", "an", "object"],
    ]
    for body in bad:
        status, answer = _call("POST", f"{gunicorn.base}/reservations", body)
        assert status == 422, (body, answer)
        assert answer["error"], answer
    assert _enqueued(redis_url, prefix) == 0
    status, answer = _call("GET", f"{gunicorn.base}/jobs/launch/00000000-0000-4000-8000-0")
    assert status == 404, answer


def _child_enqueues(queue: SyncQueue, n: int, done: Any) -> None:
    """In a forked child: enqueue with the parent's SyncQueue, report the ids (or the error)."""
    try:
        done.put([queue.enqueue(Job(type="noop", args={})) for _ in range(n)])
        queue.close()
    except BaseException as exc:  # reported to the parent, which fails the test
        done.put(f"{type(exc).__name__}: {exc}")


def test_multiprocessing_fork_child_uses_a_fresh_queue(redis_url: str, prefix: str) -> None:
    """A SyncQueue used before a fork works in the forked child (on its own loop and
    connections) and still works in the parent afterwards."""
    ctx = multiprocessing.get_context("fork")
    with SyncQueue.from_url(redis_url, prefix=prefix) as queue:
        queue.enqueue(Job(type="noop", args={}))  # the parent's connection exists at the fork
        done = ctx.Queue()
        children = [ctx.Process(target=_child_enqueues, args=(queue, 5, done)) for _ in range(2)]
        for child in children:
            child.start()
        results = [done.get(timeout=30) for _ in children]
        for child in children:
            child.join(30)
            assert child.exitcode == 0
        assert all(isinstance(r, list) and len(r) == 5 for r in results), results
        # The children's exits closed nothing of the parent's.
        queue.enqueue(Job(type="noop", args={}))
        assert queue.stats(["noop"])[0].enqueued == 12


def test_call_timeout_raises_a_streamq_error(private_server: PrivateServer, prefix: str) -> None:
    """A call the server does not answer in time raises BackendError after ``timeout``, and the
    SyncQueue works again once the server answers."""
    with SyncQueue.from_url(private_server.url, prefix=prefix, timeout=0.5) as queue:
        queue.stats(["noop"])
        private_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendError, match=r"SyncQueue.enqueue did not finish within 0.5s"):
                queue.enqueue(Job(type="noop", args={}))
            assert time.monotonic() - started < 8, "the timeout did not bound the call"
        finally:
            private_server.resume()
        wait_for(lambda: queue.stats(["noop"]) is not None, "the queue answering again")


def test_unset_queue_does_not_recurse() -> None:
    """A SyncQueue whose __init__ never ran (as copy and pickle build one) raises AttributeError
    for a missing attribute, not RecursionError; pickling or copying one is a clear TypeError."""
    bare = SyncQueue.__new__(SyncQueue)
    with pytest.raises(AttributeError):
        bare.stats  # noqa: B018
    assert not hasattr(bare, "_queue")
    with SyncQueue(lambda: Queue(MemoryBackend())) as queue:
        for clone in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError, match="SyncQueue"):
                clone(queue)


def _loop_threads() -> int:
    return sum(t.name == "streamq-sync" for t in threading.enumerate())


def test_failed_factory_leaves_no_thread() -> None:
    """A factory that raises: the error reaches the caller and no loop thread is left running."""
    before = _loop_threads()

    def broken() -> Queue:
        raise ConfigError("no such server")

    with pytest.raises(ConfigError, match="no such server"):
        SyncQueue(broken)
    assert _loop_threads() == before
