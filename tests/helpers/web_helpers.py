"""Running ``streamq web`` as a real subprocess against a test server, for the dashboard tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from worker_procs import Workers, wait_until

HERE = Path(__file__).parent
_ANNOUNCED = re.compile(r"dashboard at (https?://\S+?)/?(?:\s|$)")
_LOGIN = re.compile(r"log in once at (https?://\S+/\?token=(\S+))")


class Web:
    """One ``streamq web --port 0`` process; ``base`` is where it listens, ``token`` the token
    it made for the run (printed in its login URL), if it made one."""

    def __init__(self, url: str, prefix: str, logs: Path, *args: str, token: str = "") -> None:
        env = os.environ | {
            "STREAMQ_REDIS_URL": url,
            "STREAMQ_PREFIX": prefix,
            "PYTHONPATH": str(HERE),
        }
        env.pop("STREAMQ_WEB_TOKEN", None)
        if token:
            env["STREAMQ_WEB_TOKEN"] = token
        self.log = logs / f"web-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamq", "web", "--port", "0", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.base = self._wait_for_address()
        login = _LOGIN.search(self.log.read_text(errors="replace"))
        self.token: str | None = login.group(2) if login else None

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if m := _ANNOUNCED.search(text):
                return m.group(1)
            if self.proc.poll() is not None:
                pytest.fail(f"streamq web exited {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"streamq web did not say where it listens:\n{self.log.read_text()}")

    def login(self, path: str = "/") -> str:
        """The URL of ``path`` with the made token: what a browser opens once to log in."""
        assert self.token is not None, "this dashboard made no token"
        return f"{self.base}{path}?token={self.token}"

    def client(self, *, login: bool = True, **kwargs: Any) -> httpx.Client:
        """An HTTP client on the dashboard (keeps cookies, follows no redirect), logged in
        through the login URL as a browser would when the dashboard made a token."""
        if login and self.token is not None:
            with httpx.Client(timeout=10, **kwargs) as first:
                assert first.get(self.login()).status_code == 303
                kwargs["cookies"] = first.cookies
        return httpx.Client(base_url=self.base, timeout=10, **kwargs)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; reaped either way."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def consumer_of(workers: Workers, proc: subprocess.Popen[bytes]) -> str:
    """The consumer name a worker announced in its start-up line (waits for it)."""
    found = wait_until(
        lambda: re.search(r"consumer ([^)\s]+)\)", workers.log_of(proc)),
        20,
        "the worker's start-up line",
    )
    return str(found.group(1))
