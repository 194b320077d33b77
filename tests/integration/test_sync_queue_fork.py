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
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import HERE, wait_for

from streamq import BackendError, ConfigError, Job, MemoryBackend, Queue, SyncQueue
from streamq._server import PrivateServer, _free_port

# Python 3.12+ warns on fork() in a process with threads (the SyncQueue's loop thread is one):
# forking such a process is exactly what these tests do, on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

REQUESTS = 24


def _enqueued(url: str, prefix: str) -> int:
    with SyncQueue.from_url(url, prefix=prefix) as q:
        return int(q.stats(["noop"])[0].enqueued)


@pytest.fixture
def gunicorn(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[str]:
    """``gunicorn --preload -w 2`` serving tests/helpers/wsgi_producer.py; its base URL."""
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    env = os.environ | {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.getcwd()]),
    }
    args = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}"]
    args += ["--timeout", "60", "--graceful-timeout", "5", "wsgi_producer:app"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(base, timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (the test then shows what)
        except OSError:
            return False

    try:
        wait_for(up, "gunicorn answering", timeout=30)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_gunicorn_preload_workers_enqueue(gunicorn: str, redis_url: str, prefix: str) -> None:
    """A SyncQueue built at import in a gunicorn --preload master works in every forked worker:
    every request enqueues its job (no "closed" error, no hang)."""
    before = _enqueued(redis_url, prefix)  # the start-up probe's request enqueued one

    def get(_: int) -> dict[str, Any]:
        with urllib.request.urlopen(gunicorn, timeout=20) as response:
            assert response.status == 200
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(get, range(REQUESTS)))
    assert len({a["job_id"] for a in answers}) == REQUESTS
    assert all(a["pid"] != a["master"] for a in answers), "served by the master itself"
    assert _enqueued(redis_url, prefix) == before + REQUESTS


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
