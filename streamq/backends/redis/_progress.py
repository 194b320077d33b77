"""The step progress of jobs with several steps: one hash per job in its stream's hash tag,
``{prefix}:{TYPE}:progress:{JOB_ID}`` (fields ``done``, ``next``, ``at``, ``checkpoint``),
recorded by ``progress.lua`` with the ownership check, deleted by the ack or the dead letter that
ends the job (``ack.lua``, ``dead.lua``: the end-of-job keys), and expiring on its own
``ttl_ms`` after its last record in case its job vanished otherwise. See docs/steps.md.

Records are the one call a job with several steps makes between its steps, each awaited by the
lane running the job. They go out together: the records made while one exchange is on its way
wait for it to come back and then go in the next one: one ``progress.lua`` call per stream (and
consumer) for all of them, each record still checked and written on its own, in one write on a
connection held for them (``_routing``), instead of a redis-py call each (what that saves:
benchmarks/README.md, "Step progress")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rexc

from streamq.backends._base import StepProgress
from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._shared import Shared
from streamq.backends.redis._wire import Command
from streamq.exceptions import BackendError


@dataclass(slots=True)
class _Record:
    """One record waiting for the next exchange, and who awaits its answer."""

    stream: StreamKeys
    consumer: str
    entry_id: str
    key: str
    done: int
    next_step: str
    checkpoint: bytes | None
    ttl_ms: int
    answer: asyncio.Future[bool]


class Progress:
    """Records and reads the step progress of jobs."""

    def __init__(self, shared: Shared, groups: StreamGroups) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._groups = groups
        self.group = shared.group
        self._scripts = shared.scripts
        self._send = shared.router.send_to_owners
        # Records waiting for the next exchange.
        self._waiting: list[_Record] = []
        self._sender: asyncio.Task[None] | None = None

    async def record(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        job_id: str,
        *,
        done: int,
        next_step: str,
        checkpoint: bytes | None,
        ttl_ms: int,
    ) -> bool:
        """Record with the next exchange (``progress.lua``); False when the entry is not
        owned."""
        streams = self._keys.streams(type)
        if len(streams) == 1:
            s, plain = streams[0], entry_id
        else:
            located = self._keys.ids_by_stream(type, [entry_id])
            if located.bad:
                return False  # no entry of this type has that id: nobody owns it
            ((s, (plain,)),) = located.items()
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            _Record(
                s, consumer, plain, s.progress(job_id), done, next_step, checkpoint, ttl_ms, answer
            )
        )
        if self._sender is None:
            # Started on the loop's next turn: the records of every lane that finishes a step
            # meanwhile go with this one.
            self._sender = asyncio.create_task(self._send_waiting())
        return await answer

    async def _send_waiting(self) -> None:
        """Send what waits, one exchange (per node) at a time, until nothing does."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._send_batch(batch)
                except asyncio.CancelledError:
                    for r in batch:
                        r.answer.cancel()
                    raise
                except Exception as exc:  # every waiter hears of it: none waits for ever
                    for r in batch:
                        if not r.answer.done():
                            r.answer.set_exception(exc)
        finally:
            self._sender = None

    async def _send_batch(self, batch: list[_Record]) -> None:
        """One ``progress.lua`` call per stream and consumer, all in one exchange per node."""
        calls: dict[tuple[str, str, int], list[_Record]] = {}
        for r in batch:
            calls.setdefault((r.stream.jobs, r.consumer, r.ttl_ms), []).append(r)
        work = [(key[0], self._command(records)) for key, records in calls.items()]
        replies = await self._send("progress", work, whole=True)
        for records, reply in zip(calls.values(), replies, strict=True):
            self._answer(records, reply)

    def _command(self, records: list[_Record]) -> Command:
        first = records[0]
        per_record: list[Any] = []
        for r in records:
            if r.checkpoint is None:
                per_record += (r.done, r.next_step, "k", "")
            else:
                per_record += (r.done, r.next_step, "s", r.checkpoint)
        return (
            "EVALSHA", self._scripts.sha("progress"), 1 + len(records), first.stream.jobs,
            *(r.key for r in records), self.group, first.consumer, max(1, first.ttl_ms),
            *(r.entry_id for r in records), *per_record,
        )  # fmt: skip

    def _answer(self, records: list[_Record], reply: Any) -> None:
        error = None
        if isinstance(reply, BaseException):
            error = self._wire.backend_error(reply) if isinstance(reply, rexc.RedisError) else reply
        for i, r in enumerate(records):
            if r.answer.done():  # its lane was cancelled meanwhile
                continue
            if error is not None:
                r.answer.set_exception(error)
            elif int(reply[i]) < 0:
                r.answer.set_exception(
                    BackendError(f"the step progress key {r.key} could not be written")
                )
            else:
                r.answer.set_result(int(reply[i]) == 1)

    async def job_progress(
        self, type: str, job_id: str, *, entry_id: str | None = None
    ) -> StepProgress | None:
        """The job's progress: in its entry's stream, or (no entry id) in each stream of the
        type in turn."""
        if entry_id is not None:
            located = self._keys.ids_by_stream(type, [entry_id])
            streams = [s for s, ids in located.items() if ids]
        else:
            await self._groups.refresh_partition_counts([type])
            streams = self._keys.streams(type)
        for s in streams:
            found = await self._read(s, job_id)
            if found is not None:
                return found
        return None

    async def _read(self, s: StreamKeys, job_id: str) -> StepProgress | None:
        wire = self._wire
        await wire.connect()
        try:
            # HGETALL, not HMGET: a command the documented ACL user has already.
            found = await wire.client.hgetall(s.progress(job_id))
        except rexc.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                return None  # not a record this code wrote: as if there were none
            raise wire.backend_error(exc) from exc
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc
        if b"done" not in found:
            return None
        try:
            return StepProgress(
                int(found[b"done"]),
                found.get(b"next", b"").decode(errors="replace"),
                found.get(b"checkpoint", b""),
                int(found.get(b"at", 0)),
            )
        except ValueError:
            return None  # not a record this code wrote: as if there were none
