"""Cancelling one job on Redis (docs/control.md): ``cancel.lua`` removes a scheduled or waiting
job, or leaves a cancel request for a running one in ``{prefix}:{TAG}:cancels`` (a hash, job id
to the ms of the request), which the workers running jobs of the stream poll
(``cancel_requests.lua``). A cancelled job leaves ``{prefix}:{TAG}:ended:{JOB_ID}`` (``cancelled
<ms>``, kept a day) for ``Queue.job`` to find. All in the stream's slot.

Finding the job is ``_find``'s walk; the script then checks, atomically, that the job is still
where it was found (a job that moved meanwhile is looked for again, a few times).
"""

from __future__ import annotations

from streamq.backends._base import (
    CANCEL_KEEP_MS,
    ENDED_KEEP_MS,
    F_UNIQUE,
    CancelResult,
    Ended,
    Fields,
    InDead,
    InSchedule,
    JobEnd,
    NotFound,
    job_id_of,
)
from streamq.backends.redis._find import Finder
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._replies import text
from streamq.backends.redis._shared import Shared

#: How many times a job that moved between the lookup and the cancel is looked for again.
ATTEMPTS = 5


class Canceller:
    """Cancels jobs, reads the cancel requests, ends the running jobs cancelled."""

    def __init__(self, shared: Shared, finder: Finder) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._call = shared.scripts.call
        self._sha = shared.scripts.sha
        self._send = shared.router.send_to_owners
        self._finder = finder
        self.group = shared.group

    def _script_keys(self, s: StreamKeys, job_id: str, fields: Fields) -> list[str]:
        keys = [s.jobs, s.scheduled, s.stats, s.cancels(), s.ended(job_id)]
        keys.append(s.progress(job_id))
        unique = fields.get(F_UNIQUE)
        if unique is not None:
            keys.append(s.unique(unique.decode()))
        return keys

    async def cancel(self, type: str, job_id: str) -> CancelResult:
        """See :meth:`Backend.cancel`."""
        for _ in range(ATTEMPTS):
            found = await self._finder.find_job(type, job_id)
            if isinstance(found, Ended):
                if found.state == "done":
                    return CancelResult("done")
                return CancelResult("cancelled", already=True)
            if isinstance(found, InDead):
                return CancelResult("dead")
            if isinstance(found, NotFound):
                return CancelResult("unknown")
            what: str | bytes
            if isinstance(found, InSchedule):
                s = self._keys.streams(type)[found.part or 0]
                how, what, fields = "schedule", found.member, found.entry.fields
            else:
                ids = self._keys.ids_by_stream(type, [found.entry_id])
                ((s, (entry_id,)),) = ids.items()
                fields = found.fields
                # Running (delivered) or not, the script looks again and acts on what it sees.
                how, what = "stream", entry_id
            args = [how, what, self.group, "", job_id, 0, ENDED_KEEP_MS, CANCEL_KEEP_MS]
            reply = await self._call("cancel", self._script_keys(s, job_id, fields), args)
            tag = text(reply[0])
            if tag == "cancelled":
                return CancelResult("cancelled")
            if tag == "running":
                return CancelResult("cancelling", consumer=text(reply[1]))
        return CancelResult("unknown")

    async def cancel_requests(self, type: str) -> set[str]:
        """See :meth:`Backend.cancel_requests`: one script call per stream, all at once."""
        sha = self._sha("cancel_requests")
        work = [
            (k, ("EVALSHA", sha, 1, k, CANCEL_KEEP_MS))
            for k in (s.cancels() for s in self._keys.streams(type))
        ]
        replies = await self._send("cancels", work)
        out: set[str] = set()
        for reply in replies:
            if isinstance(reply, BaseException):
                raise self._wire.backend_error(reply)
            out.update(text(r) for r in reply)
        return out

    async def end_cancelled(
        self, type: str, consumer: str, entry_id: str, fields: Fields, end: JobEnd | None = None
    ) -> bool:
        """See :meth:`Backend.end_cancelled`."""
        ids = self._keys.ids_by_stream(type, [entry_id])
        ((s, (plain_id,)),) = ids.items()
        job_id = job_id_of(fields) or ""
        keys = self._script_keys(s, job_id, fields)
        args = ["running", plain_id, self.group, consumer, job_id, 0, ENDED_KEEP_MS, 0]
        reply = await self._call("cancel", keys, args)
        return text(reply[0]) == "cancelled"
