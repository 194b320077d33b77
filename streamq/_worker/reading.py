"""The read loop: read as many entries as there are free slots, send the finished jobs' acks
with the same call, and start what was read on the lanes.

This and :mod:`streamq._worker.acks` are the hot path (read -> run -> ack): per read batch the
loop makes the same few calls whatever the batch size, and per delivery only :meth:`Reader.start`
and the lanes' call of :meth:`~streamq._worker.acks.AckBatcher.run_delivery` run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from streamq._registry import JobType
from streamq._worker.acks import AckBatcher
from streamq._worker.flow import FlowGate
from streamq._worker.lanes import Lanes
from streamq._worker.pausing import POLL_EVERY
from streamq._worker.runner import Runner
from streamq._worker.state import Held, WorkerState
from streamq._worker.type_caps import TypeCaps
from streamq.backends._base import Backend, Delivery
from streamq.exceptions import BackendError

#: The longest a read blocks while a capped type is left out of it because it is full (its
#: freed slots are read into within about this long).
FULL_BLOCK_MS = 100


class Reader:
    """Reads the served types' streams for this consumer and starts each delivery on the lanes.

    Args:
        concurrency: deliveries held at once; a read asks for at most half of that (see
            ``read_max``) and never for more than the free slots.
        block: how long one read waits for new entries, in seconds.
        caps: the per-type caps (None: no type has one, and reads share the slots evenly).
    """

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        runner: Runner,
        acks: AckBatcher,
        *,
        types: Mapping[str, JobType],
        consumer: str,
        concurrency: int,
        block: float,
        caps: TypeCaps | None = None,
        gate: FlowGate | None = None,
    ) -> None:
        self._state = state
        self._backend = backend
        self._runner = runner
        self._acks = acks
        self._types = list(types)
        self._consumer = consumer
        self._concurrency = concurrency
        self._block = block
        self._caps = caps
        #: the flow gate, when a served type has flow control (None: every delivery runs)
        self._gate = gate if gate is not None and gate.active else None
        self._running = state.running
        # A read asks for at most half the slots, so that one read is on its way while the
        # lanes run what the other brought: the server works while this process does.
        self._read_max = max(1, concurrency // 2)
        self._rotation = 0
        #: Where deliveries run; set by the worker when it starts (lanes need a running loop).
        self.lanes: Lanes[Held] | None = None

    async def loop(self, stop_when_empty: bool) -> None:
        """Read until the worker stops (or, with ``stop_when_empty``, until nothing is left)."""
        state, backend, acks, running = self._state, self._backend, self._acks, self._running
        stopping, slot_freed, pel_lock = state.stopping, state.slot_freed, state.pel_lock
        types, consumer, paused, caps = self._types, self._consumer, state.paused, self._caps
        block_ms = max(1, int(self._block * 1000))
        # While a type is paused, a read blocks no longer than a poll of the marks, so that a
        # resume is acted on within about a second even when the other types are idle.
        paused_block_ms = max(1, min(block_ms, int(POLL_EVERY * 1000)))
        failures = 0
        # After a full read, more entries are likely waiting: the next read does not block, so
        # that finished jobs wait for it (their ack goes with it) instead of a call of their own.
        more = False
        while not stopping.is_set():
            # Finished jobs free their slots with the ack that goes out with this read.
            free = min(self._concurrency - len(running) + acks.pending, self._read_max)
            if free <= 0:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            readable = [t for t in types if t not in paused] if paused else types
            if not readable:
                await self._wait_while_all_paused(stop_when_empty)
                continue
            shares = None
            if caps is None:
                read_types, count = self._choose_types(readable, free)
            else:
                shares = caps.shares(readable, free, acks.acking())
                if not shares:  # every type it may read is at its cap
                    await self._wait_for_room()
                    continue
                read_types, count = list(shares), sum(shares.values())
            finished = acks.take()
            try:
                if finished or more:
                    ids = acks.ids(finished)
                    # The end-of-job clean-up of the jobs that have one; plain jobs have none,
                    # and their call is the one it always was.
                    ends = acks.ends(finished) if acks.ends_any else None
                    async with pel_lock:
                        answer = await backend.ack_and_read(
                            ids, read_types, consumer, count, ends, acks.keep, shares=shares
                        )
                    acks.settle(finished, answer.lost, answer.failed)
                    batch = answer.deliveries
                else:
                    acks.read_blocked = True
                    try:
                        wait_ms = paused_block_ms if paused else block_ms
                        if shares is None:
                            batch = await backend.read(read_types, consumer, count, wait_ms)
                        else:
                            # A capped type left out (full) is not watched by this read: look
                            # again soon, so that its freed slots are read into.
                            if len(shares) < len(readable):
                                wait_ms = min(wait_ms, FULL_BLOCK_MS)
                            batch = await backend.read(
                                read_types, consumer, count, wait_ms, shares=shares
                            )
                    finally:
                        acks.read_blocked = False
            except BackendError as exc:
                if finished:
                    acks.settle(finished, {}, dict.fromkeys(finished, str(exc)))
                failures += 1
                # While the read loop waits, the ack loop acks what finishes.
                acks.read_blocked = True
                try:
                    await state.pause_after_error("read", exc, failures)
                finally:
                    acks.read_blocked = False
                continue
            failures = 0
            more = len(batch) >= count
            if self._gate is not None and batch:
                batch = await self._gate.admit(batch)
            self.start(batch)
            if not batch and stop_when_empty and not running and await self._all_empty():
                state.stop(now=False)

    async def admit_and_start(self, deliveries: list[Delivery]) -> None:
        """:meth:`start` what the flow gate admits (claimed deliveries, by recovery)."""
        if self._gate is not None and deliveries:
            deliveries = await self._gate.admit(deliveries)
        self.start(deliveries)

    def start(self, deliveries: list[Delivery]) -> None:
        """Hold ``deliveries`` and queue them on the lanes (read here, or claimed by recovery)."""
        self._runner.check_tracing_sdks()
        runs = []
        running = self._running
        for d in deliveries:
            run = Held(d)
            running[d.type, d.entry_id] = run
            runs.append(run)
        assert self.lanes is not None
        self.lanes.submit(runs)

    def _choose_types(self, types: list[str], free: int) -> tuple[list[str], int]:
        """Which types to read, and how many entries in all (the backend shares them among the
        types): every type and ``free``; with more types than free slots, a rotating window of
        ``free`` types, one entry each."""
        if len(types) <= free:
            return types, free
        self._rotation = (self._rotation + free) % len(types)
        return (types[self._rotation :] + types[: self._rotation])[:free], free

    async def _wait_for_room(self) -> None:
        """Every type it may read is at its cap: wait for a slot to free (a finished job's,
        whose ack goes with the next read). While some type is paused, look again after a
        poll of the marks, as a resume may make an uncapped type readable."""
        state = self._state
        state.slot_freed.clear()
        if not state.paused:
            await state.slot_freed.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.slot_freed.wait(), POLL_EVERY)

    async def _wait_while_all_paused(self, stop_when_empty: bool) -> None:
        """Every served type is paused: read nothing until a resume (or a stop) changes that.
        What finishes meanwhile is acked by the ack loop, as while a read blocks."""
        state, acks = self._state, self._acks
        state.pause_changed.clear()  # before the flush: a change during it ends the wait
        acks.read_blocked = True
        try:
            await acks.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.pause_changed.wait(), self._block)
        finally:
            acks.read_blocked = False
        if stop_when_empty and not self._running and await self._all_empty():
            state.stop(now=False)

    async def _all_empty(self) -> bool:
        """Whether nothing is left for this worker: every served type that is not paused has
        nothing waiting, running, scheduled or held by flow control (a paused type's jobs wait
        for its resume)."""
        paused = self._state.paused
        for t in self._types:
            if t in paused:
                continue
            raw = await self._backend.stats(t)
            if raw.length or raw.scheduled or raw.held:  # held: waiting for a slot or a rate
                return False
        return True
