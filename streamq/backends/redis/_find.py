"""Finding one job by its id (``Queue.job``): where it is among a type's streams, schedules and
dead streams, every partition.

Job ids are random UUIDs and entry ids are times, and nothing on the server maps one to the
other (an index would cost every enqueue and ack a write). So a lookup walks: per stream of the
type (all partitions at once), ``find_job.lua`` looks at one bounded chunk of one place per call
(at most :data:`CHUNK` entries, about 1.5 ms of the server's time: benchmarks/README.md), and the
calls go on from a cursor, so one lookup never holds the server for long.

The order, and why it cannot miss a job that exists throughout, though it moves meanwhile
(docs/job-state.md has this at more length):

1. Walk the stream, oldest entry first, to its end. A job only ever enters a stream at its end
   (an enqueue, a due job moved from the schedule, a dead job re-driven, a stuck one requeued:
   each is a new entry, with an id above every id the stream gave before), and an entry keeps
   its place while it is delivered (waiting -> running is the same entry). So when the call
   that reaches the end answers, every entry then in the stream has been looked at. That call
   also reads the stream's ``retried`` and ``dead`` counters.
2. Not found: at that moment the job was in the schedule or the dead stream. Scan the schedule
   (ZSCAN, which returns every member present from the start to the end of the scan), then walk
   the dead stream (entries are added at its end only).
3. Walk the stream again from where step 1 ended: a job that left the schedule or the dead
   stream while they were scanned went to the end of the stream, and is there. To leave the
   stream again it must fail into the schedule (``retried`` + 1) or die (``dead`` + 1): if both
   counters are unchanged, the job was nowhere, and the answer is "not found", settled.
4. A counter moved: some job entered the schedule or the dead stream meanwhile. Go to step 2
   again (the dead stream from where it ended), at most :data:`ROUNDS` times; a type whose jobs
   keep failing through all of them answers "not found, not settled".

A job stays in its own stream's keys (partition) for its whole life, so each partition is
searched on its own, with its own counters.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

from streamq.backends._base import (
    Ended,
    InDead,
    InSchedule,
    InStream,
    JobLocation,
    NotFound,
    PendingEntry,
    ScheduledEntry,
    job_id_of,
)
from streamq.backends.redis._finished import FIND_STEP, encode_id
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._inspect import dead_entry
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._replies import as_fields, text
from streamq.backends.redis._schedule import unpack_fields
from streamq.backends.redis._shared import Shared
from streamq.backends.redis._wire import Command

#: Entries (or schedule members) one call looks at: about 1.5 ms of the server's time for the
#: stream's entries of about 300 bytes (benchmarks/README.md, "Finding a job").
CHUNK = 1000
#: How many times steps 2 and 3 run at most (see the module's docstring).
ROUNDS = 3

_GLOB_SPECIAL = frozenset(b"*?[]\\")


def member_pattern(job_id: str) -> bytes:
    """A ZSCAN MATCH pattern for the schedule members holding ``job_id`` as their ``id`` field
    (as ``_schedule.pack_fields`` packs it), glob characters of the id escaped."""
    raw = job_id.encode()
    needle = b"2:id%d:%b" % (len(raw), raw)
    escaped = b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in needle)
    return b"*" + escaped + b"*"


@dataclass(slots=True)
class _Search:
    """One lookup over a type's streams: the job id, and whether a partition found it."""

    job_id: str
    found: bool = False


def done_windows(now_ms: int) -> list[tuple[str, str]]:
    """XRANGE bounds that tile a ``finished`` stream from the newest entries back: the last
    quarter second before ``now_ms`` (and anything after it), then windows twice as long each
    (a quarter second to about 36 hours), then everything older. ``now_ms`` is this machine's
    clock: a skewed one only moves the windows, which cover every id whatever it is."""
    bounds = [max(0, now_ms - (250 << i)) for i in range(20)]
    windows = [(str(bounds[0]), "+")]
    windows += [(str(b), f"({a}") for a, b in itertools.pairwise(bounds) if b < a]
    windows.append(("-", f"({bounds[-1]}"))
    return windows


class Finder:
    """Looks for one job in the keys of its type, chunk by chunk."""

    def __init__(self, shared: Shared, groups: StreamGroups) -> None:
        self._call = shared.scripts.call
        self._send = shared.router.send_to_owners
        self._wire = shared.wire
        self._keys = shared.keys
        self._refresh = groups.refresh_partition_counts
        self.group = shared.group
        #: entries (or schedule members) per call
        self.chunk = CHUNK

    async def find_job(self, type: str, job_id: str) -> JobLocation:
        """Look in every partition of ``type`` at once; the first that finds it answers."""
        await self._refresh([type])
        search = _Search(job_id)
        answers = await asyncio.gather(
            *(self._find_in(s, search) for s in self._keys.streams(type))
        )
        for answer in answers:
            if not isinstance(answer, NotFound):
                return answer
        ended = await self.ended(type, job_id)
        if ended is not None:
            return ended
        return NotFound(settled=all(isinstance(a, NotFound) and a.settled for a in answers))

    async def ended(self, type: str, job_id: str) -> Ended | None:
        """The record a cancelled or finished job left, in any of the type's streams (a
        cancelled one's first; of two finished ones, the newest); None for none."""
        streams = self._keys.streams(type)
        work: list[tuple[str, Command]] = [
            (s.ended(job_id), ("GET", s.ended(job_id))) for s in streams
        ]
        for reply in await self._send("ended", work):
            if isinstance(reply, BaseException):
                raise self._wire.backend_error(reply)
            if reply:
                state, _, at = text(reply).partition(" ")
                try:
                    return Ended(state, int(at))
                except ValueError:
                    return Ended(state, 0)
        needle = f"\n{encode_id(job_id)} "
        done = [
            e
            for e in await asyncio.gather(*(self._done_in(s, needle) for s in streams))
            if e is not None
        ]
        return max(done, key=lambda e: e.at_ms) if done else None

    async def _done_in(self, s: StreamKeys, needle: str) -> Ended | None:
        """The newest finished-job record of one stream that ``needle`` finds (None for none,
        or for one older than the time it was to be kept), walking its ``finished`` entries a
        step at a time (``find_done.lua``) through windows of time from the newest back
        (:func:`done_windows`): the first window that has one holds the newest, so a job that
        ended a moment ago costs a call or two, not the whole stream."""
        found = None
        for start, end in done_windows(int(time.time() * 1000)):
            window = start
            while True:
                args = [needle, start, end, FIND_STEP]
                reply = await self._call("find_done", [s.finished()], args)
                more, last, now = int(reply[0]), text(reply[1]), int(reply[2])
                first = text(reply[3])
                oldest = int(first.partition("-")[0]) if first else -1
                if len(reply) > 4:
                    found = (text(reply[4]), text(reply[5]), int(reply[6]), text(reply[7]), now)
                if not more:
                    break
                start = f"({last}"
            # Found, or nothing older than this window's start (an empty stream: nothing at all).
            if found is not None or window == "-" or oldest < 0 or oldest >= int(window):
                break
        if found is None:
            return None
        entry_id, consumer, keep_ms, line, now = found
        at_ms = int(entry_id.partition("-")[0])
        if at_ms + keep_ms < now:
            return None
        took, deliveries = line.rsplit(" ", 2)[1:]
        return Ended.done_of(f"{at_ms} {took} {deliveries} {consumer}")

    async def _find_in(self, s: StreamKeys, search: _Search) -> JobLocation:
        """Steps 1 to 4 of the module's docstring, in one stream's keys."""
        walked = await self._walk_stream(s, search, "-")
        if not isinstance(walked, tuple):
            return walked
        cursor, counters = walked
        dead_cursor = "-"
        for _ in range(ROUNDS):
            scheduled = await self._scan_schedule(s, search)
            if scheduled is not None:
                return scheduled
            dead = await self._walk_dead(s, search, dead_cursor)
            if not isinstance(dead, str):
                return dead
            dead_cursor = dead
            walked = await self._walk_stream(s, search, cursor)
            if not isinstance(walked, tuple):
                return walked
            cursor, now = walked
            if now == counters:
                return NotFound()
            counters = now
        return NotFound(settled=False)

    async def _step(self, s: StreamKeys, what: str, job_id: str, *args: object) -> Any:
        """One call of ``find_job.lua`` (``what``: stream, schedule or dead) in ``s``'s keys."""
        keys = [s.jobs, s.scheduled, s.dead, s.stats]
        start, *extra = args
        return await self._call("find_job", keys, [what, job_id, start, self.chunk, *extra])

    async def _walk_stream(
        self, s: StreamKeys, search: _Search, start: str
    ) -> InStream | NotFound | tuple[str, tuple[int, int]]:
        """Walk the stream from ``start`` to its end: the entry found, or where the walk
        ended and the counters read then."""
        while True:
            if search.found:
                return NotFound()
            reply = await self._step(s, "stream", search.job_id, start, self.group)
            tag = reply[0]
            if tag == b"found":
                search.found = True
                entry_id, row = text(reply[1]), reply[3]
                pending = None
                if row:
                    pending = PendingEntry(s.ref(entry_id), text(row[1]), int(row[2]), int(row[3]))
                return InStream(s.ref(entry_id), as_fields(reply[2]), pending)
            start = text(reply[1])
            if tag == b"end":
                return start, (int(reply[2]), int(reply[3]))

    async def _scan_schedule(self, s: StreamKeys, search: _Search) -> InSchedule | NotFound | None:
        """One whole ZSCAN of the schedule: the job found there, or None."""
        pattern = member_pattern(search.job_id)
        cursor: bytes | str = "0"
        while True:
            if search.found:
                return NotFound()
            reply = await self._step(s, "schedule", search.job_id, cursor, pattern)
            cursor, now_ms, rows = reply[0], int(reply[1]), reply[2:]
            for member, score in zip(rows[::2], rows[1::2], strict=True):
                fields = unpack_fields(member)
                if job_id_of(fields) == search.job_id:
                    search.found = True
                    entry = ScheduledEntry.of(fields, int(float(score)), now_ms)
                    return InSchedule(entry, bytes(member), self._index(s))
            if cursor in (b"0", "0"):
                return None

    def _index(self, s: StreamKeys) -> int | None:
        """Where ``s`` is among its type's streams (None: the type has one)."""
        streams = self._keys.streams(s.type)
        return None if len(streams) == 1 else streams.index(s)

    async def _walk_dead(
        self, s: StreamKeys, search: _Search, start: str
    ) -> InDead | NotFound | str:
        """Walk the dead stream from ``start`` to its end: the dead job, or where it ended."""
        while True:
            if search.found:
                return NotFound()
            reply = await self._step(s, "dead", search.job_id, start)
            if reply[0] == b"found":
                search.found = True
                return InDead(dead_entry(s, reply[1], as_fields(reply[2])))
            start = text(reply[1])
            if reply[0] == b"end":
                return start
