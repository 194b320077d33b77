"""A SIGTERM that reaches a worker while it starts (after ``streamq consume`` printed its
start-up line, before the worker's first read) stops it cleanly, exit 0, as a SIGTERM later
does: the signal handlers are the worker's first act, not its last step of start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal
    import handlers
    from streamq import MemoryBackend, Worker

    class SignalledWhileStarting(MemoryBackend):
        async def ensure_groups(self, types):
            os.kill(os.getpid(), signal.SIGTERM)  # as a supervisor's stop, mid start-up
            await asyncio.sleep(0.05)
            await super().ensure_groups(types)

    async def main():
        worker = Worker(SignalledWhileStarting(), handlers.registry, ["noop"], block=0.05)
        await worker.run(handle_signals=True)
        print("stopped", worker.processed)

    asyncio.run(main())
    """
)


def test_a_sigterm_during_start_up_stops_the_worker_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip().splitlines()[-1] == "stopped 0"  # after its log lines
