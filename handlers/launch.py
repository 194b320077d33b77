"""``launch``: provision cloud instances for a reservation, in three idempotent steps.

No cloud is called: :class:`SimulatedCloud` stands in for the provider APIs, with configurable
latency (``STREAMQ_LAUNCH_LATENCY`` seconds per call, default 0.05) and failure rate
(``STREAMQ_LAUNCH_FAILURE_RATE``, 0..1, default 0). Each step is idempotent, because a job may be
delivered more than once: the key is looked up by fingerprint before upload, and instances are
launched with the reservation id as the client token, so a second launch returns the first one's
instances.

The steps hand what they made to the next ones through the job's checkpoint
(:class:`LaunchState`, ``ctx.save``): the key's name from step 1 is what step 2 launches with, and
the instance ids step 2 launched are what step 3 describes. A retry after step 3 failed starts at
step 3 with those ids (docs/steps.md): steps 1 and 2 do not run again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from streamq import Job, JobContext, JobType

log = structlog.get_logger("handlers.launch")

Provider = Literal["aws", "azure", "gcp"]


@dataclass(frozen=True, slots=True)
class LaunchArgs:
    """What to launch: ``amount`` instances of ``instance_type`` from ``image_id``."""

    provider: Provider
    reservation_id: int
    pubkey: str
    amount: int = 1
    instance_type: str = "t3.small"
    image_id: str = "ami-0000000000"
    region: str = "us-east-1"


@dataclass(frozen=True, slots=True)
class LaunchState:
    """The launch's checkpoint: what the steps done so far made, for the steps after them."""

    key_name: str
    instance_ids: tuple[str, ...] = ()


class CloudError(Exception):
    """A (simulated) provider API call failed."""


@dataclass
class SimulatedCloud:
    """An in-process stand-in for the provider APIs, keyed like the real ones would be."""

    latency: float = 0.05
    failure_rate: float = 0.0
    keys: dict[str, str] = field(default_factory=dict)
    instances: dict[str, list[str]] = field(default_factory=dict)
    key_of: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def _call(self, what: str) -> None:
        if self.latency > 0:
            await asyncio.sleep(random.uniform(0.5, 1.5) * self.latency)
        if self.failure_rate and random.random() < self.failure_rate:
            raise CloudError(f"simulated {what} failure")

    async def ensure_key(self, account: str, pubkey: str) -> str:
        """Upload the key unless one with the same fingerprint is there; returns its name."""
        fingerprint = hashlib.sha256(pubkey.encode()).hexdigest()[:16]
        await self._call("import-key-pair")
        with self._lock:
            return self.keys.setdefault(f"{account}/{fingerprint}", f"streamq-{fingerprint}")

    async def run_instances(self, client_token: str, amount: int, key_name: str) -> list[str]:
        """Launch ``amount`` instances with the key ``key_name``; the same client token returns
        the same instances."""
        await self._call("run-instances")
        with self._lock:
            if client_token not in self.instances:
                self.instances[client_token] = [
                    f"i-{random.getrandbits(64):016x}" for _ in range(amount)
                ]
                for i in self.instances[client_token]:
                    self.key_of[i] = key_name
            return list(self.instances[client_token])

    async def describe(self, instance_ids: Sequence[str]) -> list[dict[str, str]]:
        """State of the instances with these ids (those the provider knows)."""
        await self._call("describe-instances")
        with self._lock:
            known = {i for ids in self.instances.values() for i in ids}
            return [
                {"id": i, "state": "running", "key_name": self.key_of.get(i, "")}
                for i in instance_ids
                if i in known
            ]


CLOUD = SimulatedCloud(
    latency=float(os.environ.get("STREAMQ_LAUNCH_LATENCY", "0.05")),
    failure_rate=float(os.environ.get("STREAMQ_LAUNCH_FAILURE_RATE", "0")),
)


def _token(job: Job[Any]) -> str:
    args: LaunchArgs = job.args
    return f"{args.provider}-reservation-{args.reservation_id}"


def _state(ctx: JobContext[LaunchState]) -> LaunchState:
    state = ctx.checkpoint
    if state is None:  # step 1 saves one before any later step runs
        raise RuntimeError(f"step {ctx.step_name!r} found no checkpoint")
    return state


async def ensure_pubkey(job: Job[LaunchArgs], ctx: JobContext[LaunchState]) -> None:
    """Step 1: make sure the account's public key exists at the provider; save its name."""
    name = await CLOUD.ensure_key(str(job.account_id), job.args.pubkey)
    ctx.save(LaunchState(key_name=name))
    log.info("launch.pubkey_ready", key_name=name)


async def launch_instances(job: Job[LaunchArgs], ctx: JobContext[LaunchState]) -> None:
    """Step 2: launch the instances with step 1's key (idempotent through the reservation's
    client token); save their ids for step 3."""
    state = _state(ctx)
    ids = await CLOUD.run_instances(_token(job), job.args.amount, state.key_name)
    ctx.save(LaunchState(key_name=state.key_name, instance_ids=tuple(ids)))
    log.info("launch.instances_launched", count=len(ids))


async def describe_instances(job: Job[LaunchArgs], ctx: JobContext[LaunchState]) -> None:
    """Step 3: describe the instances step 2 launched (their ids from the checkpoint)."""
    ids = _state(ctx).instance_ids
    described = await CLOUD.describe(ids)
    if len(described) != job.args.amount:
        raise CloudError(f"expected {job.args.amount} instances, found {len(described)}")
    log.info("launch.instances_described", count=len(described))


JOB_TYPE = JobType(
    name="launch",
    args=LaunchArgs,
    steps=(ensure_pubkey, launch_instances, describe_instances),
    checkpoint=LaunchState,
)
