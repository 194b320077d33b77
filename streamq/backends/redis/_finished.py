"""Finished-job records on Redis: what an ack with :class:`KeepDone` sends for them, and how a
reader finds one (the layout and the cap: ``done_record.lua``).

One entry of the stream's ``{prefix}:{TAG}:finished`` per ack call, its records built here as
one value: a line ``\\nJOB_ID TOOK_MS DELIVERIES`` per acked id, in the ids' order (an empty line
for an id without a record). The ack script copies that value whole; a reader looks for
``\\nJOB_ID `` in it (``find_done.lua``), which can only match at the start of a record: a job
id that holds a space, a line break or a percent sign is percent-encoded first (those three
characters only, so an id of that shape cannot pass for another's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from streamq.backends._base import JobEnd, KeepDone

#: How many entries of ``finished`` one step of a search reads (``find_done.lua``).
FIND_STEP = 500


def encode_id(job_id: str) -> str:
    """``job_id`` as it stands in a record (unchanged unless it holds ``%``, space or LF)."""
    if "%" in job_id or " " in job_id or "\n" in job_id:
        return job_id.replace("%", "%25").replace(" ", "%20").replace("\n", "%0A")
    return job_id


def records_value(of: Sequence[JobEnd | None]) -> str:
    """The ``r`` value of an entry: one line per id (``of``: each id's end, None: no record)."""
    return "".join(f"\n{encode_id(e.job_id)} {e.took_ms} {e.deliveries}" if e else "\n" for e in of)


class Refreshes:
    """When each ``finished`` stream's expiry is due to be set again by this backend: once per
    slack (an eighth of keep_ms / 8), to keep_ms + slack, so that a record written at any time
    has at least keep_ms to live whoever wrote last."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}

    def ttl_ms(self, key: str, keep: KeepDone) -> int:
        """The expiry to set on ``key`` with this ack (0: not due yet)."""
        now = time.monotonic()
        if now < self._due.get(key, 0.0):
            return 0
        slack_ms = max(1, keep.ms // 64)
        self._due[key] = now + slack_ms / 1000
        return keep.ms + slack_ms


def record_args(
    keep: KeepDone, streams: int, of: Sequence[JobEnd | None], ttl_ms: int
) -> tuple[int, int, int, str]:
    """What ``ack_done.lua`` and ``finish.lua`` take for the records of one stream's acked ids
    (besides the ids): ``keep_ms``, ``most`` (the type's cap shared among its ``streams``), the
    expiry to set (0: none), and the records (``of``: each id's end, in the ids' order)."""
    return keep.ms, -(-keep.most // streams), ttl_ms, records_value(of)
