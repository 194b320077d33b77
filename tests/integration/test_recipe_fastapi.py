"""docs/examples/fastapi_app.py under a real uvicorn, a real worker and the test server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import wait_for

from streamq import SyncQueue
from streamq._server import _free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def _env(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMQ_")}
    env |= {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_PREFIX": prefix,
        "STREAMQ_STATE_DIR": str(tmp_path / "state"),
        # The application's own handlers/ package, as from the project's folder.
        "PYTHONPATH": str(ROOT),
        "STREAMQ_LAUNCH_LATENCY": "0",
    }
    return env


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def call(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    """One HTTP request: (status, headers, the JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


@pytest.fixture
def env(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    """The recipe's environment: the test server and prefix, the repository's handlers."""
    return _env(redis_url, prefix, tmp_path)


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``uvicorn fastapi_app:app`` on a free port; its base URL."""
    port = _free_port()
    log = tmp_path / "uvicorn.log"
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "fastapi_app:app"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return call("GET", f"{base}/openapi.json")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, "uvicorn answering", timeout=30)
        yield base
    finally:
        # The lifespan's exit closed the Queue: uvicorn says so only when it did not raise.
        # (Recent uvicorn re-raises the SIGTERM after its graceful shutdown: exit -15.)
        assert _stop(proc) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text(), log.read_text()


RESERVATION = {
    "account_id": 42,
    "provider": "aws",
    "reservation_id": 7,
    "pubkey": "ssh-ed25519 AAAA",
    "amount": 2,
}


def test_a_reservation_is_enqueued_and_runs_to_done(
    api: str, env: dict[str, str], tmp_path: Path
) -> None:
    """POST /reservations answers 202 and a job id; the job waits until a real worker runs
    it, and GET /jobs/launch/{id} then says done."""
    status, headers, accepted = call("POST", f"{api}/reservations", RESERVATION)
    assert status == 202, accepted
    job_id = accepted["job_id"]
    assert accepted == {
        "job_id": job_id,
        "type": "launch",
        "status_url": f"/jobs/launch/{job_id}",
    }
    assert headers["location"] == f"/jobs/launch/{job_id}"
    status, _, waiting = call("GET", f"{api}{accepted['status_url']}")
    assert (status, waiting["state"], waiting["job_id"]) == (200, "waiting", job_id)

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamq", "consume", "launch", "--log-format", "json"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        done = wait_for(
            lambda: (d := call("GET", f"{api}/jobs/launch/{job_id}")[2])["state"] == "done" and d,
            "the job done",
            timeout=30,
        )
    finally:
        assert _stop(worker) == 0, log.read_text()
    assert done["deliveries"] == 1
    assert done["ended_at"] is not None
    assert done["last_error"] is None


@pytest.mark.parametrize(
    "body",
    [
        {**RESERVATION, "provider": "ibm"},
        {**RESERVATION, "amount": 0},
        {k: v for k, v in RESERVATION.items() if k != "pubkey"},
        {**RESERVATION, "reservation_id": "seven"},
    ],
    ids=["provider", "amount", "no-pubkey", "id-type"],
)
def test_a_bad_body_is_422_and_enqueues_nothing(
    api: str, body: dict[str, Any], redis_url: str, prefix: str
) -> None:
    """A body that does not validate: 422, and no job reaches the stream."""
    status, _, answer = call("POST", f"{api}/reservations", body)
    assert status == 422, answer
    assert answer["detail"], answer
    with SyncQueue.from_url(redis_url, prefix=prefix) as queue:
        assert queue.stats(["launch"])[0].enqueued == 0


def test_an_unknown_job_is_404(api: str) -> None:
    """GET of a job id never enqueued, or of a type with no jobs: 404 with a detail."""
    for path in ("/jobs/launch/00000000-0000-4000-8000-000000000000", "/jobs/nope/abc"):
        status, _, answer = call("GET", f"{api}{path}")
        assert status == 404, (path, answer)
        assert answer["detail"].startswith("no "), answer
