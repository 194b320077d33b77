"""The memory backend's flow control (docs/flow-control.md): the same decisions as the Redis
scripts (``admit.lua``, ``flow_free.lua``), under the backend's one lock, by the wall clock."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Sequence

from streamq.backends._base import F_DELIVERIES, Fields
from streamq.backends._flow_base import F_RATED, Admission, FlowRule, KeyLoad, Verdict
from streamq.backends._memory_inspect import MemoryInspection
from streamq.backends._memory_stream import MemoryStream


def _now_ms() -> float:
    return time.time_ns() / 1_000_000


def _sweep(slots: dict[str, float], now: float) -> None:
    """Expired slots go (a worker that died), as ``ZREMRANGEBYSCORE`` drops them."""
    for entry_id in [i for i, until in slots.items() if until <= now]:
        del slots[entry_id]


class MemoryFlow(MemoryInspection):
    """Slots, held jobs and rates per type, in the type's :class:`MemoryStream`."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__()
        self._later_order = itertools.count()

    async def admit(self, type: str, asks: Sequence[Admission], rule: FlowRule) -> list[Verdict]:
        """See :meth:`FlowControl.admit`."""
        out: list[Verdict] = []
        with self._lock:
            stream = self._stream(type)
            now = _now_ms()
            for a in asks:
                out.append(self._admit_one(stream, a, rule, now))
        return out

    def _admit_one(self, stream: MemoryStream, a: Admission, rule: FlowRule, now: float) -> Verdict:
        slots = None
        if a.key is not None:
            slots = stream.slots.setdefault(a.key, {})
            _sweep(slots, now)
            if a.entry_id not in slots and len(slots) >= rule.concurrency:
                fields = self._hold(stream, a)
                if fields is None:
                    return "gone"
                stream.held.setdefault(a.key, deque()).append(fields)
                return "wait"
        if a.rate is not None:
            tat = max(stream.rates.get(a.rate, 0.0), now)
            due = tat - rule.tolerance_ms
            later = due >= now + 1  # timed to the millisecond, as admit.lua
            if later:
                fields = self._hold(stream, a)
                if fields is None:
                    return "gone"
                fields[F_RATED] = b"1"
                entry = (int(due), next(self._later_order), fields)
                heapq.heappush(stream.later, entry)
            stream.rates[a.rate] = tat + rule.interval_ms
            if later:
                return "later"
        if slots is not None:
            slots[a.entry_id] = now + rule.lease_ms
        return "run"

    @staticmethod
    def _hold(stream: MemoryStream, a: Admission) -> Fields | None:
        """Take a pending entry out of the stream (ack and delete) to hold it; None when it is
        not pending."""
        if stream.pel.pop(a.entry_id, None) is None:
            return None
        fields = stream.entries.pop(a.entry_id, None)
        if fields is None:
            return None
        fields = dict(fields)
        fields.pop(F_DELIVERIES, None)
        if a.before:
            fields[F_DELIVERIES] = str(a.before).encode()
        return fields

    async def free(self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule) -> int:
        """See :meth:`FlowControl.free`."""
        with self._lock:
            stream = self._stream(type)
            keys: dict[str, None] = {}
            for entry_id, key in slots:
                stream.slots.get(key, {}).pop(entry_id, None)
                keys[key] = None
            moved = self._wake_keys(stream, list(keys), rule)
            waiters = self._waiters_for([type]) if moved else []
        self._wake(waiters)
        return moved

    def _wake_keys(self, stream: MemoryStream, keys: list[str], rule: FlowRule) -> int:
        now = _now_ms()
        moved = 0
        for key in keys:
            slots = stream.slots.setdefault(key, {})
            _sweep(slots, now)
            held = stream.held.get(key)
            while held and len(slots) < rule.concurrency:
                slots[stream.add(held.popleft())] = now + rule.lease_ms
                moved += 1
            if not held:
                stream.held.pop(key, None)
            if not slots:
                del stream.slots[key]
        return moved

    async def refresh_slots(
        self, type: str, slots: Sequence[tuple[str, str]], rule: FlowRule
    ) -> None:
        """See :meth:`FlowControl.refresh_slots`."""
        with self._lock:
            stream = self._stream(type)
            until = _now_ms() + rule.lease_ms
            for entry_id, key in slots:
                held = stream.slots.get(key)
                if held is not None and entry_id in held:
                    held[entry_id] = until

    async def wake_held(self, type: str, rule: FlowRule) -> int:
        """See :meth:`FlowControl.wake_held`."""
        with self._lock:
            stream = self._stream(type)
            moved = self._wake_keys(stream, list(stream.held), rule)
            waiters = self._waiters_for([type]) if moved else []
        self._wake(waiters)
        return moved

    async def flow_keys(self, type: str, limit: int) -> list[KeyLoad]:
        """See :meth:`FlowControl.flow_keys`."""
        with self._lock:
            stream = self._stream(type)
            now = _now_ms()
            loads = []
            for key in set(stream.slots) | set(stream.held):
                running = sum(1 for until in stream.slots.get(key, {}).values() if until > now)
                waiting = len(stream.held.get(key, ()))
                if running or waiting:
                    loads.append(KeyLoad(key, running, waiting))
        loads.sort(key=lambda k: (-(k.running + k.held), k.key))
        return loads[: max(0, limit)]
