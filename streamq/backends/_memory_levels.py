"""The memory backend's reads of never-delivered entries: one queue, or a type's priority
levels as ``read_levels.lua`` takes them (the rule is ``streamq/backends/_priority.py``'s)."""

from __future__ import annotations

from collections import deque

from streamq.backends._base import Delivery
from streamq.backends._memory_stream import MemoryStream, PendingRecord, parse_id
from streamq.backends._priority import LevelTurns


def take_from(
    type: str,
    stream: MemoryStream,
    queue: deque[str],
    consumer: str,
    share: int,
    now: float,
    out: list[Delivery],
) -> int:
    """Deliver up to ``share`` of ``queue``'s entries to ``consumer`` (into ``out``); how
    many (lock held)."""
    taken = 0
    while queue and taken < share:
        entry_id = queue.popleft()
        fields = stream.entries.get(entry_id)
        if fields is None:  # deleted before anyone read it
            continue
        stream.pel[entry_id] = PendingRecord(parse_id(entry_id), consumer, now, 1)
        out.append(Delivery(type, entry_id, dict(fields), 1))
        taken += 1
    return taken


def take_levels(
    turns: LevelTurns,
    type: str,
    stream: MemoryStream,
    consumer: str,
    count: int,
    now: float,
    out: list[Delivery],
) -> None:
    """Take up to ``count`` from a type's levels as ``read_levels.lua`` does: what the lower
    levels are owed first (low, then default), then high, default and low in order (lock
    held)."""
    empty: deque[str] = deque()
    queues = [
        stream.levels.get(b"high", empty),
        stream.undelivered,
        stream.levels.get(b"low", empty),
    ]
    reset, owed_taken, taken = [False, False, False], [0, 0, 0], [0, 0, 0]
    left = count
    owed = (0, *turns.owed(consumer, type, count))
    for i in (2, 1):
        n = min(owed[i], left)
        if n > 0:
            got = take_from(type, stream, queues[i], consumer, n, now, out)
            owed_taken[i] = taken[i] = got
            reset[i] = got < n
            left -= got
    for i in range(3):
        if left > 0:
            reset[i] = True
            got = take_from(type, stream, queues[i], consumer, left, now, out)
            taken[i] += got
            left -= got
    turns.note(consumer, type, reset, owed_taken, taken)
