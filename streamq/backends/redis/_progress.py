"""The step progress of jobs with several steps: one hash per job in its stream's hash tag,
``{prefix}:{TYPE}:progress:{JOB_ID}`` (fields ``done``, ``next``, ``at``, ``checkpoint``),
recorded by ``progress.lua`` with the ownership check, deleted by the ack or the dead letter that
ends the job (``ack.lua``, ``dead.lua``: the end-of-job keys), and expiring on its own
``ttl_ms`` after its last record in case its job vanished otherwise. See docs/steps.md."""

from __future__ import annotations

from streamq.backends._base import StepProgress
from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._shared import Shared


class Progress:
    """Records and reads the step progress of jobs."""

    def __init__(self, shared: Shared, groups: StreamGroups) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._groups = groups
        self.group = shared.group
        self._call = shared.scripts.call

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
        """One ``progress.lua`` call in the entry's stream; False when the entry is not owned."""
        located = self._keys.ids_by_stream(type, [entry_id])
        if located.bad:
            return False  # no entry of this type has that id: nobody owns it
        ((s, (plain,)),) = located.items()
        args: list[object] = [self.group, consumer, plain, done, next_step, max(1, ttl_ms)]
        if checkpoint is not None:
            args.append(checkpoint)
        n = await self._call("progress", [s.jobs, s.progress(job_id)], args)
        return int(n) == 1

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
