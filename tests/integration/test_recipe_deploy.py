"""docs/examples/streamq-worker.service and k8s-worker.yaml: their invariants, and their worker
command run as written against the test server (the probe command with it)."""

from __future__ import annotations

import inspect
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import wait_for

from streamq import Worker
from streamq._cli._app import parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
UNIT = EXAMPLES / "streamq-worker.service"
K8S = EXAMPLES / "k8s-worker.yaml"
#: the worker's cleanup after the grace: cancelling the rest, the last acks, handing back
CLEANUP_S = inspect.signature(Worker).parameters["shutdown_cleanup"].default
#: what `consume` gives running jobs when --shutdown-grace is not said
DEFAULT_GRACE = "30s"
#: a Redis URL with credentials in it: user:password@ or :password@
SECRET_URL = re.compile(r"rediss?://[^\s/@]*:[^\s/@]+@", re.IGNORECASE)


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (comments dropped, continuations joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    joined = re.sub(r"\\\n", " ", text)
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a directive outside a section: {line!r}"
        key, eq, value = line.partition("=")
        assert eq, f"not a directive: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_seconds(value: str) -> float:
    """``50``, ``50s``, ``1min 30s``: a systemd time span in seconds (the forms used here)."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(n) * units[unit]
    return total


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` (or ``--name=VALUE``) in ``argv``."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def deployment() -> dict[str, Any]:
    """The Deployment of k8s-worker.yaml."""
    [doc] = [d for d in yaml.safe_load_all(K8S.read_text()) if d and d["kind"] == "Deployment"]
    assert isinstance(doc, dict)
    return doc


def worker_container() -> dict[str, Any]:
    """The Deployment's one container."""
    [container] = deployment()["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def unit_argv() -> list[str]:
    """The unit's ExecStart, split as systemd splits it."""
    [exec_start] = unit_directives(UNIT.read_text())["Service"]["ExecStart"]
    return shlex.split(exec_start)


def test_the_unit_stops_cleanly_within_its_timeout_and_keeps_no_secret() -> None:
    """The unit: SIGTERM to the worker, TimeoutStopSec above --shutdown-grace plus the
    clean-up, restarts on failure only, the URL from an EnvironmentFile, no password here."""
    text = UNIT.read_text()
    service = unit_directives(text)["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]
    assert service["Restart"] == ["on-failure"]
    argv = unit_argv()
    assert Path(argv[0]).name == "streamq", argv
    assert argv[1] == "consume", argv
    grace = parse_duration(option(argv, "--shutdown-grace") or DEFAULT_GRACE)
    [stop] = service["TimeoutStopSec"]
    assert systemd_seconds(stop) > grace + CLEANUP_S, (stop, grace, CLEANUP_S)
    assert service["EnvironmentFile"], "the URL comes from a root-only file"
    assert not any(v.startswith("STREAMQ_REDIS_URL=") for v in service.get("Environment", []))
    assert not SECRET_URL.search(text.replace(":PASSWORD@", "")), "a password in the unit"
    health = option(argv, "--health-file")
    assert health is not None
    assert health.startswith("/run/streamq-worker/")
    assert service["RuntimeDirectory"] == ["streamq-worker"]


def test_the_deployment_outlasts_the_grace_and_probes_the_health_file() -> None:
    """The Deployment: terminationGracePeriodSeconds above --shutdown-grace plus the clean-up,
    the URL from a Secret, the liveness and startup probes ``streamq health`` of the file the
    worker touches, on a volume mounted there."""
    spec = deployment()["spec"]["template"]["spec"]
    container = worker_container()
    argv = container["command"]
    assert argv[:2] == ["streamq", "consume"], argv
    grace = parse_duration(option(argv, "--shutdown-grace") or DEFAULT_GRACE)
    assert spec["terminationGracePeriodSeconds"] > grace + CLEANUP_S
    [url] = [e for e in container["env"] if e["name"] == "STREAMQ_REDIS_URL"]
    assert set(url) == {"name", "valueFrom"}, url
    assert "secretKeyRef" in url["valueFrom"], url
    assert not SECRET_URL.search(K8S.read_text().replace(":PASSWORD@", ""))
    health = option(argv, "--health-file")
    assert health is not None
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["exec"]["command"] == ["streamq", "health", health], probe
    # The probe runs a Python process: its timeout leaves room for the import.
    assert container["livenessProbe"]["timeoutSeconds"] >= 5
    [mount] = container["volumeMounts"]
    assert Path(health).parent == Path(mount["mountPath"])
    assert {v["name"] for v in spec["volumes"]} == {mount["name"]}


def _streamq(argv: list[str]) -> list[str]:
    """``streamq ARGS`` as this interpreter runs it (the checkout's streamq, not an install)."""
    return [sys.executable, "-m", "streamq", *argv[1:]]


@pytest.mark.parametrize("source", ["systemd", "k8s"])
def test_the_documented_command_runs_and_its_probe_passes(
    source: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """The snippet's worker command line, as written (its health file moved into a temporary
    folder), serves the test server; the probe command says it is alive; SIGTERM stops it
    with exit 0."""
    if source == "systemd":
        argv = unit_argv()
        probe = ["streamq", "health", option(argv, "--health-file") or ""]
    else:
        argv = list(worker_container()["command"])
        probe = list(worker_container()["livenessProbe"]["exec"]["command"])
    written = option(argv, "--health-file")
    health = tmp_path / "health"
    argv = [str(health) if a == written else a for a in argv]
    probe = [str(health) if a == written else a for a in probe]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMQ_")}
    env |= {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_PREFIX": prefix,
        "STREAMQ_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        # In the application's folder, as WorkingDirectory= and the image's workdir say.
        proc = subprocess.Popen(_streamq(argv), env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        wait_for(lambda: proc.poll() is None and health.exists(), "the health file", 30)
        assert proc.poll() is None, log.read_text()
        assert "streamq: consuming launch, noop" in log.read_text()
        done = subprocess.run(
            _streamq(probe), env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "max 30s" in done.stdout, done.stdout  # 3 of the default 10 s heartbeats
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()
