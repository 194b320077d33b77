"""The flow gate: deliveries of a type with a per-key limit or a rate (``JobType(limit=,
rate=)``) ask the backend for their slot before they run, and give it back when they end
(docs/flow-control.md).

A delivery over its key's limit or its rate is *held* by the backend in the same atomic call
(out of the stream, its delivery not counted): the worker just does not start it. Slots are
leases in the backend: this keeper renews the ones its running jobs hold every heartbeat, so a
worker that dies frees its slots within ``claim_after``; a sweep wakes the held jobs of keys
whose slots expired that way. Types without flow control never pass through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from streamq._codec import TypedDecoder
from streamq._flow import key_of
from streamq._logging import logger
from streamq._registry import JobType
from streamq._worker.state import WorkerState
from streamq.backends._base import F_BODY, Backend, Delivery, prior_deliveries
from streamq.backends._flow_base import F_RATED, Admission, FlowRule
from streamq.exceptions import BackendError

FIRST = asyncio.FIRST_COMPLETED


class _TypeFlow:
    """One type's flow control as the gate applies it."""

    __slots__ = ("decoder", "job_type", "rule")

    def __init__(self, job_type: JobType, lease_ms: int) -> None:
        self.job_type = job_type
        limit, rate = job_type.limit, job_type.rate
        self.rule = FlowRule(
            concurrency=limit.concurrency if limit is not None else 0,
            lease_ms=lease_ms,
            interval_ms=rate.interval_ms if rate is not None else 0.0,
            tolerance_ms=rate.tolerance_ms if rate is not None else 0.0,
        )
        self.decoder = TypedDecoder(job_type.name, job_type.args)

    def ask(self, d: Delivery) -> Admission:
        """What to ask the backend for ``d``."""
        jt, fields = self.job_type, d.fields
        decoded: Callable[[], Any] = lambda: (self.decoder(fields) or (None,))[0]  # noqa: E731
        key = None if jt.limit is None else key_of(fields, jt.limit.key, decoded)
        rate = None
        if jt.rate is not None and F_RATED not in fields:
            rate = "" if jt.rate.key is None else ":" + key_of(fields, jt.rate.key, decoded)
        before = prior_deliveries(fields) + d.deliveries - 1
        return Admission(d.entry_id, key, rate, max(0, before))


class FlowGate:
    """Admits the deliveries of the types with flow control, and keeps their slots."""

    def __init__(
        self,
        state: WorkerState,
        backend: Backend,
        *,
        types: Mapping[str, JobType],
        claim_after: float,
        heartbeat: float,
    ) -> None:
        lease_ms = max(1, int(claim_after * 1000))
        self._flows = {
            t: _TypeFlow(jt, lease_ms)
            for t, jt in types.items()
            if jt.limit is not None or jt.rate is not None
        }
        self._state = state
        self._backend = backend
        self._heartbeat = heartbeat
        # Held jobs of keys whose slots a dead worker left are woken this often.
        self._sweep_every = min(heartbeat, max(claim_after / 4, 0.05))
        #: (type, entry id) -> key value: the slots this worker's jobs hold
        self.holding: dict[tuple[str, str], str] = {}
        #: deliveries held back by this worker's admissions, per verdict (for tests and logs)
        self.held_back = {"wait": 0, "later": 0}

    @property
    def active(self) -> bool:
        """Whether any served type has flow control."""
        return bool(self._flows)

    async def admit(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries that may run now: every one of a type without flow control, and the
        ones the backend admitted; the others are held by the backend (or, when the call
        fails, left pending, to be recovered after claim_after as a dead worker's are)."""
        flows = self._flows
        asks: dict[str, list[Delivery]] = {}
        out: list[Delivery] = []
        for d in deliveries:
            if d.type in flows and F_BODY in d.fields:
                asks.setdefault(d.type, []).append(d)
            else:
                out.append(d)  # no flow control (or a body-less poison entry: it dies)
        for type_, ds in asks.items():
            flow = flows[type_]
            admissions = [flow.ask(d) for d in ds]
            try:
                verdicts = await self._backend.admit(type_, admissions, flow.rule)
            except BackendError as exc:
                logger.warning(
                    "streamq.flow.admit_failed", job_type=type_, count=len(ds), error=str(exc)
                )
                continue
            for d, a, verdict in zip(ds, admissions, verdicts, strict=True):
                if verdict == "run":
                    out.append(d)
                    if a.key is not None:
                        self.holding[type_, d.entry_id] = a.key
                elif verdict != "gone":
                    self.held_back[verdict] += 1
                    logger.debug(
                        "streamq.job.held", job_type=type_, entry_id=d.entry_id, until=verdict
                    )
        return out

    async def loop(self) -> None:
        """Until the worker closes: give back the slots of ended jobs as they end, renew the
        others every heartbeat, wake held jobs every sweep; at the end give back every slot."""
        state = self._state
        ended = state.ended
        now = time.monotonic()
        next_refresh = now + self._heartbeat
        next_sweep = now + self._sweep_every
        closing = asyncio.ensure_future(state.closing.wait())
        try:
            while not closing.done():
                woken = asyncio.ensure_future(ended.wait())
                await asyncio.wait((woken, closing), timeout=self._sweep_every, return_when=FIRST)
                woken.cancel()
                ended.clear()
                await self._free([k for k in self.holding if k not in state.running])
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + self._heartbeat
                    await self._refresh()
                if now >= next_sweep:
                    next_sweep = now + self._sweep_every
                    await self._sweep()
        finally:
            closing.cancel()
            # Whatever is left ended or was handed back: its slot is free for the next one.
            with contextlib.suppress(Exception):
                await self._free(list(self.holding))

    async def _free(self, done: list[tuple[str, str]]) -> None:
        by_type: dict[str, list[tuple[str, str]]] = {}
        holding = self.holding
        for k in done:
            by_type.setdefault(k[0], []).append((k[1], holding[k]))
        for type_, slots in by_type.items():
            try:
                await self._backend.free(type_, slots, self._flows[type_].rule)
            except BackendError as exc:
                # The slots stay taken until their leases run out (claim_after): a sweep then
                # wakes what waits for them.
                logger.warning("streamq.flow.free_failed", job_type=type_, error=str(exc))
            for entry_id, _ in slots:
                holding.pop((type_, entry_id), None)

    async def _refresh(self) -> None:
        by_type: dict[str, list[tuple[str, str]]] = {}
        for (type_, entry_id), key in self.holding.items():
            by_type.setdefault(type_, []).append((entry_id, key))
        for type_, slots in by_type.items():
            try:
                await self._backend.refresh_slots(type_, slots, self._flows[type_].rule)
            except BackendError as exc:
                logger.warning("streamq.flow.refresh_failed", job_type=type_, error=str(exc))

    async def _sweep(self) -> None:
        for type_, flow in self._flows.items():
            if flow.rule.concurrency and type_ not in self._state.paused:
                try:
                    await self._backend.wake_held(type_, flow.rule)
                except BackendError as exc:
                    logger.warning("streamq.flow.wake_failed", job_type=type_, error=str(exc))
