"""``streamq consume -p N``: a supervisor that runs N worker processes and keeps them running.

Each child is a whole ``streamq consume`` of the same command line without ``-p`` (its own
process, event loop, connections and consumer name), started in a process group of its own so
that a Ctrl-C in the terminal reaches the supervisor alone, which forwards it once:

- a child that exits while the supervisor is not stopping is started again after a backoff
  (1 s, doubling to 30 s; back to 1 s once a child has run for a minute), with a log line;
- a child that exits 2 (a usage error its own checks found) stops them all: the supervisor
  exits 2, the child's one line already on stderr;
- SIGTERM or SIGINT: forwarded to every child, which drains within its ``--shutdown-grace``;
  the supervisor exits 0 when every child did. A second signal is forwarded too (each child
  then stops at once); a child still alive at grace + :data:`MARGIN_S` is killed.
- if the supervisor itself is killed, each child gets SIGTERM from the kernel (Linux:
  ``PR_SET_PDEATHSIG``) and drains as on any SIGTERM.

``--metrics-port P`` gives child *i* (1..N) the port ``P + i - 1`` (0 stays 0: any free port,
each child says its own); ``--health-file PATH`` gives child *i* ``PATH.i``, and the supervisor
touches ``PATH`` itself, every heartbeat, while every running child's file is fresh: the probe
(``streamq health PATH``) fails when one child's event loop is stuck.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamq._logging import logger
from streamq._worker.health import HealthFile, read_health
from streamq._worker.leases import SUPERVISOR_ENV

#: Restart backoff: first delay, the longest, and how long a child must run to reset it.
BACKOFF_S = (1.0, 30.0, 60.0)
#: Beyond the shutdown grace: the children's own clean-up (cancel, hand back) before SIGKILL.
MARGIN_S = 15.0
#: How often the supervisor looks at its children.
TICK_S = 0.1
_PR_SET_PDEATHSIG = 1
#: The server the parent resolved (and announced), passed to the children in their environment:
#: a password in it never shows in ``ps``, and the embedded server is started once.
URL_ENV = "STREAMQ_REDIS_URL"


def child_argv(argv: Sequence[str], index: int, health: Path | None) -> list[str]:
    """The child's command line: ``argv`` (this process's, after the program) without the
    ``-p``/``--processes`` option, with child ``index``'s metrics port and health file."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("-p", "--processes"):
            next(it, None)
            continue
        if arg.startswith("--processes=") or (arg.startswith("-p") and arg[2:].isdigit()):
            continue
        if arg == "--url":  # the children have it from their environment (see Supervisor)
            next(it, None)
            continue
        if arg.startswith("--url="):
            continue
        name, eq, value = arg.partition("=")
        if name in ("--metrics-port", "--health-file"):
            value = value if eq else next(it, "")
            if name == "--metrics-port":
                port = int(value)
                value = str(port + index - 1 if port else 0)
            else:
                value = f"{value}.{index}"
            out += [name, value]
            continue
        out.append(arg)
    return [sys.executable, "-m", "streamq", *out]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = BACKOFF_S[0]
    restart_at: float | None = None
    code: int | None = None
    starts: int = field(default=0)

    def start(self, supervisor: int, url: str) -> None:
        env = dict(os.environ, **{SUPERVISOR_ENV: f"{supervisor}:{self.index}", URL_ENV: url})
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.started = time.monotonic()
        self.restart_at = None
        self.code = None
        self.starts += 1
        logger.info(
            "streamq.supervisor.child_started",
            index=self.index,
            child_pid=self.proc.pid,
            start=self.starts,
        )

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)


class Supervisor:
    """Runs ``n`` children of ``argv`` on the server ``url`` until a signal, then drains them
    (see the module)."""

    def __init__(
        self,
        argv: Sequence[str],
        n: int,
        *,
        grace: float,
        health_file: Path | None,
        url: str,
    ) -> None:
        self._url = url
        self._children = [_Child(i, child_argv(argv, i, health_file)) for i in range(1, n + 1)]
        self._grace = grace
        self._health = health_file
        self._signals = 0
        self._deadline: float | None = None
        self._usage_error = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1
        if self._deadline is None:
            self._deadline = time.monotonic() + self._grace + MARGIN_S
        logger.info(
            "streamq.supervisor.stopping",
            signal=signal.Signals(signum).name,
            at_once=self._signals > 1,
        )
        for child in self._children:
            child.signal(signum)

    def run(self) -> int:
        """Start the children and supervise them; the exit code (0: every child drained)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        me = os.getpid()
        for child in self._children:
            child.start(me, self._url)
        next_touch = 0.0
        health = None if self._health is None else HealthFile(self._health, heartbeat=1.0)
        while True:
            now = time.monotonic()
            self._reap(now)
            if self._signals or self._usage_error:
                if all(c.proc is None or c.proc.poll() is not None for c in self._children):
                    break
                if self._deadline is not None and now >= self._deadline:
                    self._kill_the_rest()
                    break
            else:
                for child in self._children:
                    if child.restart_at is not None and now >= child.restart_at:
                        child.start(me, self._url)
            if health is not None and now >= next_touch:
                next_touch = now + 1.0
                if self._children_fresh():
                    health.touch()
            time.sleep(TICK_S)
        if self._usage_error:
            return 2
        codes = [c.code for c in self._children]
        return 0 if all(code == 0 for code in codes) else 1

    def _reap(self, now: float) -> None:
        for child in self._children:
            if child.proc is None or child.restart_at is not None or child.code is not None:
                continue
            code = child.proc.poll()
            if code is None:
                continue
            child.code = code
            lived = now - child.started
            if code == 2 and not self._signals:
                # Its own checks refused the command line: every child would do the same.
                self._usage_error = True
                self._deadline = now + self._grace + MARGIN_S
                logger.error(
                    "streamq.supervisor.usage_error", index=child.index, child_pid=child.proc.pid
                )
                for other in self._children:
                    other.signal(signal.SIGTERM)
                continue
            if self._signals or self._usage_error:
                logger.info(
                    "streamq.supervisor.child_stopped",
                    index=child.index,
                    child_pid=child.proc.pid,
                    exit_code=code,
                )
                continue
            if lived >= BACKOFF_S[2]:
                child.delay = BACKOFF_S[0]
            child.restart_at = now + child.delay
            logger.warning(
                "streamq.supervisor.child_exited",
                index=child.index,
                child_pid=child.proc.pid,
                exit_code=code,
                signal=signal.Signals(-code).name if code < 0 else None,
                lived_s=round(lived, 1),
                restart_in_s=child.delay,
            )
            child.delay = min(child.delay * 2, BACKOFF_S[1])

    def _children_fresh(self) -> bool:
        """Whether every running child touched its health file within its limit (a child
        between restarts, or not yet started long enough to write one, does not count)."""
        assert self._health is not None
        for child in self._children:
            if child.proc is None or child.proc.poll() is not None:
                continue
            path = Path(f"{self._health}.{child.index}")
            try:
                if not read_health(path).fresh:
                    return False
            except FileNotFoundError:
                if time.monotonic() - child.started > 30.0:
                    return False
            except (OSError, ValueError):
                return False
        return True

    def _kill_the_rest(self) -> None:
        for child in self._children:
            if child.proc is not None and child.proc.poll() is None:
                logger.warning(
                    "streamq.supervisor.child_killed",
                    index=child.index,
                    child_pid=child.proc.pid,
                    after_s=round(self._grace + MARGIN_S, 1),
                )
                child.signal(signal.SIGKILL)
                child.proc.wait()
                child.code = child.proc.returncode


__all__ = ["Supervisor", "child_argv"]
