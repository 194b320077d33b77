"""The flow-control half of the Backend protocol: slots of per-key concurrency limits, rate
limits, and the jobs held back by them (docs/flow-control.md).

A worker asks the backend to *admit* the deliveries of a type with flow control before they
run (:meth:`FlowControl.admit`). One that may run takes a slot of its key (a lease that expires
``lease_ms`` after it was last refreshed, so a dead worker's slots free themselves); one over its
key's limit is *held*: moved out of the stream into its key's queue, atomically with the ack of
its delivery, so it neither blocks the jobs behind it nor counts as a delivery; one over its
rate waits in the type's rate queue for its start, which is reserved for it. When a job ends
the worker frees its slot (:meth:`FlowControl.free`), which moves the next held job of its key
back to the stream with the slot already its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

#: What :meth:`FlowControl.admit` says of one delivery: it may run (it holds its slot); it is
#: held for its key's slot, or for its start in the rate queue; or it was not there to hold
#: (acked or claimed meanwhile: nothing to do).
Verdict = Literal["run", "wait", "later", "gone"]

#: The field a job that waited in the rate queue carries: its start was reserved then, so it
#: is not counted against the rate again (a retry drops it).
F_RATED = b"rated"


@dataclass(frozen=True, slots=True)
class FlowRule:
    """A type's flow control as a backend applies it (from ``JobType(limit=, rate=)``)."""

    #: jobs of one key value that may run at once (0: no per-key limit)
    concurrency: int
    #: how long a slot is held without a refresh (the worker's claim_after), in ms
    lease_ms: int
    #: the rate's spacing of two starts, in ms (0: no rate)
    interval_ms: float = 0.0
    #: how far ahead a start may be reserved and still start now (the burst), in ms
    tolerance_ms: float = 0.0


@dataclass(slots=True)
class Admission:
    """One delivery a worker asks to run under its type's :class:`FlowRule`."""

    entry_id: str
    #: its value of the Limit's key (None: the type has no per-key limit)
    key: str | None
    #: which rate it counts against: ``""`` the type's, ``":VALUE"`` its key value's; None:
    #: no rate, or its start was reserved already (:data:`F_RATED`)
    rate: str | None
    #: its deliveries before this one (a held job keeps them: a hold is not a delivery)
    before: int


@dataclass(frozen=True, slots=True)
class KeyLoad:
    """One key value of a type with a per-key limit: its jobs running (slots taken, leases
    not yet run out) and held (waiting for a slot)."""

    key: str
    running: int
    held: int


class FlowControl(Protocol):
    """The flow-control calls of a backend (part of :class:`~streamq.backends._base.Backend`)."""

    async def admit(self, type: str, asks: Sequence[Admission], rule: FlowRule) -> list[Verdict]:
        """Decide for each delivery, in order, atomically per stream: ``run`` (a slot of its
        key is its own now, lease ``rule.lease_ms``; its rate's start taken), else hold it:
        ``wait`` (its key is full: into the key's queue) or ``later`` (over its rate: into the
        rate queue, due at its reserved start). A held entry is acked and deleted from the
        stream in the same step, its fields kept whole with its deliveries set to ``before``.
        A delivery that holds its key's slot already (woken by :meth:`free`, or claimed back)
        keeps it."""
        ...

    async def free(self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule) -> int:
        """Give back the slots ``(entry_id, key)`` of ended jobs, and move the next held jobs
        of those keys (as many as there is room for) back into the stream, each holding a slot
        of its key already. Returns how many moved."""
        ...

    async def refresh_slots(
        self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule
    ) -> None:
        """Renew the leases of the slots ``(entry_id, key)`` a worker's running jobs hold."""
        ...

    async def wake_held(self, type: str, rule: FlowRule) -> int:
        """For the keys with held jobs: drop their expired slots (a worker that died), and move
        held jobs back into the stream while there is room. Returns how many moved."""
        ...

    async def flow_keys(self, type: str, limit: int) -> list[KeyLoad]:
        """The busiest key values of a type (the most jobs running and held), at most
        ``limit``, busiest first."""
        ...
