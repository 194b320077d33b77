"""What the worker's parts share: the deliveries it holds, and the events between its loops.

One :class:`WorkerState` per worker. The parts (reading and acks, leases, recovery, shutdown)
each keep references to the pieces of it they use, taken once when they are built: the dict and
the events are never replaced, only changed, so no part reads them through this object per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streamq._logging import logger
from streamq._worker.backoff import error_backoff
from streamq._worker.outcome import DeliveryOutcome, log_fields
from streamq.backends._base import Delivery
from streamq.exceptions import BackendError


@dataclasses.dataclass(slots=True)
class Held:
    """One delivery this worker holds, from its read (or claim) until its ack or hand-back."""

    delivery: Delivery
    lost: bool = False
    outcome: DeliveryOutcome | None = None
    #: the lane running it (set when it starts), for a cancel request to reach it
    lane: Any = None
    #: a cancel request reached it (its lane was told once)
    cancel_asked: bool = False
    #: how long its run took, in ms (measured only when finished jobs' records are kept)
    took_ms: int = 0

    def log(self) -> dict[str, Any]:
        """Its log fields, for lines logged outside the delivery's own context."""
        if self.outcome is not None:
            return self.outcome.log(self.delivery)
        return log_fields(self.delivery)


class WorkerState:
    """The deliveries held and the signals of a stop, shared by the worker's loops."""

    __slots__ = (
        "closing",
        "ended",
        "hard_at",
        "hard_stop",
        "pause_changed",
        "paused",
        "pel_lock",
        "recover_wake",
        "running",
        "slot_freed",
        "stop_at",
        "stopping",
    )

    def __init__(self) -> None:
        # Keyed by (type, entry id): entry ids are unique only within one stream. Running, or
        # finished and awaiting their ack (the lease keeper keeps the leases of both).
        self.running: dict[tuple[str, str], Held] = {}
        # Every call that asks "do I still own this entry?" (ack, refresh, retry, dead-letter)
        # runs one at a time: a refresh racing an ack would report a lease as lost, and one
        # landing after a retry was scheduled would reset that retry's backoff.
        self.pel_lock = asyncio.Lock()
        self.slot_freed = asyncio.Event()
        # A delivery left ``running`` (acked, retried, dead, lost): the flow gate gives its
        # key's slot back (``_worker.flow``).
        self.ended = asyncio.Event()
        self.recover_wake = asyncio.Event()
        # The served types that are paused (docs/control.md), as the pause watcher last read
        # them, and the event it sets when they change (a stop sets it too).
        self.paused: set[str] = set()
        self.pause_changed = asyncio.Event()
        # stop() was called: the feeders (read, recovery) stop; then, past the grace period,
        # closing: the keepers (acks, leases) finish what they are doing and return.
        self.stopping = asyncio.Event()
        self.closing = asyncio.Event()
        self.hard_stop = asyncio.Event()
        # When stop() and stop(now=True) were first called (monotonic): the deadlines count
        # from there.
        self.stop_at: float | None = None
        self.hard_at: float | None = None

    def stop(self, *, now: bool) -> None:
        """Ask the loops to stop (see :meth:`streamq.Worker.stop`)."""
        if self.stop_at is None:
            self.stop_at = time.monotonic()
        self.stopping.set()
        if now:
            if self.hard_at is None:
                self.hard_at = time.monotonic()
            self.hard_stop.set()
        self.slot_freed.set()
        self.recover_wake.set()
        self.pause_changed.set()

    def forget(self, held: Held) -> None:
        """``held`` is no longer this worker's (retried, dead-lettered, lost, crashed)."""
        self.running.pop((held.delivery.type, held.delivery.entry_id), None)
        self.slot_freed.set()
        self.ended.set()

    def by_type(self) -> dict[str, list[Held]]:
        """The deliveries held, grouped by job type."""
        groups: dict[str, list[Held]] = {}
        for held in self.running.values():
            groups.setdefault(held.delivery.type, []).append(held)
        return groups

    async def pause_after_error(self, what: str, exc: BackendError, failures: int) -> None:
        """After ``failures`` failed calls in a row of a loop: say so, and wait a backoff (a
        stop ends the wait)."""
        delay = error_backoff(failures)
        logger.warning(f"streamq.worker.{what}_failed", error=str(exc), retry_in=round(delay, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)

    async def poll(self, every: float, check: Callable[[], Awaitable[object]], what: str) -> None:
        """Call ``check`` every ``every`` seconds until the worker stops; after a server error,
        say so and wait a backoff (``what`` names the loop in the log line)."""
        failures = 0
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), every)
            if self.stopping.is_set():
                return
            try:
                await check()
            except BackendError as exc:
                failures += 1
                await self.pause_after_error(what, exc, failures)
                continue
            failures = 0
