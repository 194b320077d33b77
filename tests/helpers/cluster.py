"""A real local Redis/Valkey Cluster for tests: N masters with R replicas each on 127.0.0.1.

Every node is the binary :func:`streamq._server.find_binary` returns, started the way
:class:`streamq._server.PrivateServer` starts one (127.0.0.1, protected mode, no persistence, a
directory and a log per node) plus cluster mode with a short node timeout, so a failover takes a
second or two. The bundled ``valkey-cli --cluster create`` joins the nodes. Checks speak to each
node with a plain sync ``redis.Redis`` (never streamq's backend), with short timeouts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from streamq._server import find_binary

SLOTS = 16384
NODE_TIMEOUT_MS = 1000  # PFAIL -> FAIL and the replica's election follow within ~1-3 s
READY_TIMEOUT = 20.0
START_TIMEOUT = 10.0
STOP_GRACE = 5.0
_CHECK_TIMEOUT = 1.0


class ClusterError(RuntimeError):
    """The cluster did not start, form or recover in time (the message carries the log tails)."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]
    connected: bool

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def myself(self) -> bool:
        return "myself" in self.flags


@dataclass(slots=True)
class _Node:
    port: int
    bus_port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    client: redis.Redis | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, on free 127.0.0.1 ports.

    Use as a context manager (``with LocalCluster(tmp) as c: ...``) or call start() and stop().
    """

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.directory = Path(directory).resolve()
        self.master_count = masters
        self.replica_count = replicas
        self._nodes: list[_Node] = []
        self._first_master = 0
        self.binary = find_binary()
        self.cli = _find_cli(self.binary)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Launch the nodes, create the cluster and wait until it is fully formed."""
        if any(node.alive for node in self._nodes):
            raise ClusterError("the cluster is already running")
        self._nodes = []
        try:
            taken: set[int] = set()
            for i in range(self.master_count * (1 + self.replica_count)):
                self._nodes.append(self._launch_new(self.directory / f"node{i}", taken))
            self._create()
            self._wait_ready(require_replicas=True)
            self._first_master = self.masters()[0]
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every node, SIGKILL what is left after a grace period; close the clients."""
        for node in self._nodes:
            if node.alive and node.proc is not None:
                node.proc.terminate()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + STOP_GRACE
        for node in self._nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        for node in self._nodes:
            self._close(node)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/?cluster=true`` of the first master (or, once that node is
        down, of another live node), the URL form streamq's backend accepts for a cluster."""
        port = self._first_master
        if not self._node(port).alive:
            port = next(n.port for n in self._nodes if n.alive)
        return f"redis://127.0.0.1:{port}/?cluster=true"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Every node's (host, port), live or not, in start order."""
        return [("127.0.0.1", node.port) for node in self._nodes]

    def topology(self) -> list[NodeView]:
        """CLUSTER NODES as one live node sees it."""
        errors = []
        for node in self._nodes:
            if not node.alive:
                continue
            try:
                return _parse_nodes(self._client(node).execute_command("CLUSTER NODES"))
            except redis.RedisError as e:
                errors.append(f"{node.port}: {e}")
        raise ClusterError(f"no node answered CLUSTER NODES: {errors}")

    def masters(self) -> list[int]:
        """Ports of the masters serving slots now, in slot order (asks the cluster)."""
        owners = [v for v in self.topology() if v.is_master and v.slots and not v.failed]
        return [v.port for v in sorted(owners, key=lambda v: v.slots[0][0])]

    def replicas(self) -> list[int]:
        """Ports of the replicas that are up now (asks the cluster)."""
        return sorted(v.port for v in self.topology() if "slave" in v.flags and not v.failed)

    def master_of_slot(self, slot: int) -> int:
        """The port of the master that serves ``slot`` now."""
        for view in self.topology():
            serves = any(lo <= slot <= hi for lo, hi in view.slots)
            if view.is_master and not view.failed and serves:
                return view.port
        raise ClusterError(f"no live master serves slot {slot}")

    def replicas_of(self, port: int) -> list[int]:
        """Ports of the live replicas attached to the master on ``port``."""
        views = self.topology()
        master = next(v for v in views if v.port == port)
        return sorted(v.port for v in views if v.master_id == master.node_id and not v.failed)

    # ----------------------------------------------------------------- faults

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``, as a crash would."""
        node = self._node(port)
        if node.alive and node.proc is not None:
            node.proc.kill()
            node.proc.wait()
        self._close(node)

    def kill_master_and_wait_failover(self, port: int, timeout: float = 20.0) -> int:
        """Kill the master on ``port``; wait until one of its replicas serves its slots and every
        survivor reports cluster_state:ok; return the new master's port."""
        views = self.topology()
        old = next((v for v in views if v.port == port), None)
        if old is None or not old.is_master or not old.slots:
            raise ClusterError(f"{port} is not a master serving slots")
        candidates = {v.port for v in views if v.master_id == old.node_id and not v.failed}
        if not candidates:
            raise ClusterError(f"master {port} has no replica to promote")
        slot = old.slots[0][0]
        self.kill(port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                new = self.master_of_slot(slot)
                if new in candidates and self._survivors_ok(new, slot):
                    return new
            except (ClusterError, redis.RedisError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no replica of {port} took over within {timeout} s\n{self.describe()}"
                )
            time.sleep(0.05)

    def restart(self, port: int) -> None:
        """Start a killed node again on its port and directory; it keeps its nodes.conf, so it
        rejoins (a former master comes back as a replica of the master that replaced it)."""
        node = self._node(port)
        if node.alive:
            raise ClusterError(f"node {port} is running")
        self._launch(node)

    def wait_ready(self, timeout: float = READY_TIMEOUT, *, require_replicas: bool = True) -> None:
        """Wait until every live node reports cluster_state:ok with all slots served and (with
        ``require_replicas``) each master has its replicas attached and in sync."""
        self._wait_ready(timeout, require_replicas=require_replicas)

    def describe(self) -> str:
        """Each node's state and the tail of its log, for failure messages."""
        parts = []
        for node in self._nodes:
            state = "up" if node.alive else "down"
            parts.append(f"--- node {node.port} ({state}) {node.log}\n{_tail(node.log)}")
        return "\n".join(parts)

    # ----------------------------------------------------------------- internals

    def _node(self, port: int) -> _Node:
        for node in self._nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node on port {port}")

    def _client(self, node: _Node) -> redis.Redis:
        if node.client is None:
            client = redis.Redis(
                host="127.0.0.1",
                port=node.port,
                socket_timeout=_CHECK_TIMEOUT,
                socket_connect_timeout=_CHECK_TIMEOUT,
                decode_responses=True,
            )
            # Raw text: this module parses CLUSTER NODES / INFO itself.
            client.set_response_callback("CLUSTER NODES", lambda r, **_: r)
            client.set_response_callback("CLUSTER INFO", lambda r, **_: r)
            node.client = client
        return node.client

    def _close(self, node: _Node) -> None:
        if node.client is not None:
            node.client.close()
            node.client = None

    def _launch_new(self, directory: Path, taken: set[int]) -> _Node:
        for _ in range(5):
            port, bus_port = _free_port(taken), _free_port(taken)
            node = _Node(port, bus_port, directory)
            # A fresh cluster: drop a previous start's nodes.conf and data.
            shutil.rmtree(directory, ignore_errors=True)
            try:
                self._launch(node)
            except _PortTakenError:
                continue
            return node
        raise ClusterError("five free port pairs were taken by others before a node bound them")

    def _launch(self, node: _Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        offset = node.log.stat().st_size if node.log.exists() else 0
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(node.port)]
        args += ["--cluster-port", str(node.bus_port), "--protected-mode", "yes"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        args += ["--dir", str(node.directory), "--logfile", str(node.log)]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        # A replica may always stand for election, however long its link was down.
        args += ["--cluster-replica-validity-factor", "0"]
        # Replicas sync at once (the default waits 5 s for more replicas to share the transfer).
        args += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        # Errors before the logfile is open (a bad option) go to stderr: the same file.
        with node.log.open("ab") as out:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            except OSError as e:
                raise ClusterError(f"could not run {args[0]}: {e}") from e
        node.proc = proc
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers(node):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                self._close(node)
                text = _read_from(node.log, offset)
                if "Address already in use" in text:
                    raise _PortTakenError(f"port {node.port} or {node.bus_port} is in use")
                raise ClusterError(f"node on port {node.port} did not start: {_tail_text(text)}")
            time.sleep(0.02)

    def _answers(self, node: _Node) -> bool:
        """The node answers PING and is our process (not another server that took the port)."""
        try:
            info = self._client(node).info("server")
        except redis.RedisError:
            return False
        return node.proc is not None and info.get("process_id") == node.proc.pid

    def _create(self) -> None:
        args = [self.cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self._nodes)]
        args += ["--cluster-replicas", str(self.replica_count), "--cluster-yes"]
        try:
            done = subprocess.run(args, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ClusterError(f"{' '.join(args)} failed: {e}\n{self.describe()}") from e
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise ClusterError(
                f"cluster create exited {done.returncode}: {_tail_text(output, 15)}\n"
                f"{self.describe()}"
            )

    def _wait_ready(self, timeout: float = READY_TIMEOUT, *, require_replicas: bool) -> None:
        deadline = time.monotonic() + timeout
        problem: str | None = "not checked"
        while True:
            try:
                problem = self._not_ready(require_replicas)
            except redis.RedisError as e:
                problem = f"{type(e).__name__}: {e}"
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"cluster not ready within {timeout} s: {problem}\n{self.describe()}"
                )
            time.sleep(0.05)

    def _not_ready(self, require_replicas: bool) -> str | None:
        """Return what is not ready yet, or None."""
        live = [node for node in self._nodes if node.alive]
        for node in live:
            info = _parse_info(self._client(node).execute_command("CLUSTER INFO"))
            if info.get("cluster_state") != "ok":
                return f"{node.port}: cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_ok") != str(SLOTS):
                return f"{node.port}: cluster_slots_ok:{info.get('cluster_slots_ok')}"
            if info.get("cluster_known_nodes") != str(len(self._nodes)):
                return f"{node.port}: knows {info.get('cluster_known_nodes')} nodes"
        views = self.topology()
        masters = [v for v in views if v.is_master and v.slots and not v.failed]
        if len(masters) != self.master_count:
            return f"{len(masters)} masters serve slots, expected {self.master_count}"
        if not require_replicas:
            return None
        for master in masters:
            attached = [v for v in views if v.master_id == master.node_id and not v.failed]
            if len(attached) < self.replica_count:
                return f"master {master.port} has {len(attached)} replicas"
        by_port = {v.port: v for v in views}
        for node in live:
            view = by_port.get(node.port)
            if view is None or view.failed:
                return f"node {node.port} is not seen as up"
            if view.is_master:
                continue
            # The node's own word: a restarted former master may still think it is one.
            replication = self._client(node).info("replication")
            if replication.get("role") != "slave":
                return f"replica {node.port} says role:{replication.get('role')}"
            if replication.get("master_link_status") != "up":
                link = replication.get("master_link_status")
                return f"replica {node.port}: master_link_status:{link}"
        return None

    def _survivors_ok(self, new_master: int, slot: int) -> bool:
        """Every live node says cluster_state:ok and that ``new_master`` serves ``slot``."""
        for node in self._nodes:
            if not node.alive:
                continue
            client = self._client(node)
            info = _parse_info(client.execute_command("CLUSTER INFO"))
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            views = _parse_nodes(client.execute_command("CLUSTER NODES"))
            owner = next(
                (v.port for v in views if v.is_master and any(a <= slot <= b for a, b in v.slots)),
                None,
            )
            if owner != new_master:
                return False
        return True


class _PortTakenError(ClusterError):
    """Another process bound a port between choosing it and the node binding it."""


def _find_cli(server: str) -> str:
    beside = Path(server).with_name("valkey-cli")
    if os.access(beside, os.X_OK):
        return str(beside)
    for name in ("valkey-cli", "redis-cli"):
        if found := shutil.which(name):
            return found
    raise ClusterError(f"no valkey-cli beside {server} nor valkey-cli/redis-cli on PATH")


def _free_port(taken: set[int]) -> int:
    """A free 127.0.0.1 port not handed out before in this cluster."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def _parse_info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _parse_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.splitlines():
        if not line.strip():
            continue
        node_id, addr, flags, master, _ping, _pong, _epoch, link, *slots = line.split()
        port = int(addr.split("@")[0].rsplit(":", 1)[1])
        ranges = []
        for item in slots:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = item.partition("-")
            ranges.append((int(lo), int(hi or lo)))
        views.append(
            NodeView(
                node_id=node_id,
                port=port,
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                slots=tuple(sorted(ranges)),
                connected=link == "connected",
            )
        )
    return views


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 8) -> str:
    return _tail_text(_read_from(path, 0), lines)


def _tail_text(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
