"""``launch``: provision cloud instances for a reservation, in three idempotent steps.

No cloud is called: :class:`SimulatedCloud` stands in for the provider APIs, with configurable
latency (``STREAMQ_LAUNCH_LATENCY`` seconds per call, default 0.05) and failure rate
(``STREAMQ_LAUNCH_FAILURE_RATE``, 0..1, default 0). Each step is idempotent, because a job may be
delivered more than once: the key is looked up by fingerprint before upload, and instances are
launched with the reservation id as the client token, so a second launch returns the first one's
instances.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from streamq import Job, JobType

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


class CloudError(Exception):
    """A (simulated) provider API call failed."""


@dataclass
class SimulatedCloud:
    """An in-process stand-in for the provider APIs, keyed like the real ones would be."""

    latency: float = 0.05
    failure_rate: float = 0.0
    keys: dict[str, str] = field(default_factory=dict)
    instances: dict[str, list[str]] = field(default_factory=dict)
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

    async def run_instances(self, client_token: str, amount: int) -> list[str]:
        """Launch ``amount`` instances; the same client token returns the same instances."""
        await self._call("run-instances")
        with self._lock:
            if client_token not in self.instances:
                self.instances[client_token] = [
                    f"i-{random.getrandbits(64):016x}" for _ in range(amount)
                ]
            return list(self.instances[client_token])

    async def describe(self, client_token: str) -> list[dict[str, str]]:
        """State of the instances launched with this client token."""
        await self._call("describe-instances")
        with self._lock:
            ids = self.instances.get(client_token, [])
        return [{"id": i, "state": "running"} for i in ids]


CLOUD = SimulatedCloud(
    latency=float(os.environ.get("STREAMQ_LAUNCH_LATENCY", "0.05")),
    failure_rate=float(os.environ.get("STREAMQ_LAUNCH_FAILURE_RATE", "0")),
)


def _token(job: Job[Any]) -> str:
    args: LaunchArgs = job.args
    return f"{args.provider}-reservation-{args.reservation_id}"


async def ensure_pubkey(job: Job[Any]) -> None:
    """Step 1: make sure the account's public key exists at the provider."""
    name = await CLOUD.ensure_key(str(job.account_id), job.args.pubkey)
    log.info("launch.pubkey_ready", key_name=name)


async def launch_instances(job: Job[Any]) -> None:
    """Step 2: launch the instances (idempotent through the reservation's client token)."""
    ids = await CLOUD.run_instances(_token(job), job.args.amount)
    log.info("launch.instances_launched", count=len(ids))


async def describe_instances(job: Job[Any]) -> None:
    """Step 3: fetch the instances' description."""
    described = await CLOUD.describe(_token(job))
    if len(described) != job.args.amount:
        raise CloudError(f"expected {job.args.amount} instances, found {len(described)}")
    log.info("launch.instances_described", count=len(described))


JOB_TYPE = JobType(
    name="launch",
    args=LaunchArgs,
    steps=(ensure_pubkey, launch_instances, describe_instances),
)
