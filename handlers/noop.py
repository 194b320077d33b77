"""``noop``: does nothing, after an optional sleep, failing if asked. For demos and benchmarks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from streamq import Job, JobType


@dataclass(frozen=True, slots=True)
class NoopArgs:
    """``sleep`` seconds, then raise if ``fail``."""

    sleep: float = 0.0
    fail: bool = False


class NoopFailedError(Exception):
    """The failure a ``noop`` job asked for."""


async def run(job: Job[Any]) -> None:
    """Sleep, then fail if asked to."""
    args: NoopArgs = job.args
    if args.sleep > 0:
        await asyncio.sleep(args.sleep)
    if args.fail:
        raise NoopFailedError("noop asked to fail")


JOB_TYPE = JobType(name="noop", args=NoopArgs, steps=(run,))
