"""Per-type concurrency in one worker (``Worker(type_concurrency=...)``, ``streamq consume
launch=8 noop``): a capped type never has more than its cap of deliveries held by the worker
(running, or finished and awaiting their ack), so that one slow type cannot take every slot of a
worker that serves several. The worker's total ``concurrency`` still applies; the types without
a cap share what the capped ones leave.

A read asks each type for its own count (:meth:`TypeCaps.shares`, the backend's ``shares``): a
capped type that is full is left out of the read, and its share goes to the others, so it never
blocks their reads. The recovery pass claims no more of a type than its room (:meth:`room`).

A worker without caps has no :class:`TypeCaps` at all: its read path is the one it always was.
With caps, each read counts the deliveries held per type (one pass over what the worker holds,
not per job).
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Mapping, Sequence

from streamq.backends._base import split_count
from streamq.exceptions import ConfigError

#: The total concurrency when it is not given and some served type has no cap.
DEFAULT_CONCURRENCY = 32

_type_of = operator.itemgetter(0)


def resolve_caps(
    types: Sequence[str], caps: Mapping[str, int] | None, concurrency: int | None
) -> tuple[dict[str, int], int]:
    """The caps (checked) and the worker's total concurrency.

    The total, when not given: the sum of the caps when every served type has one; else
    :data:`DEFAULT_CONCURRENCY`, raised to the sum of the caps when that is more (so that every
    capped type can be full at once). A total given smaller than a cap contradicts it (that cap
    could never be reached): ConfigError, as for a cap below 1 or of a type not served.
    """
    checked: dict[str, int] = {}
    for t, n in (caps or {}).items():
        if t not in types:
            raise ConfigError(f"type_concurrency names {t!r}, which this worker does not serve")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"the concurrency of {t!r} must be a whole number ≥ 1, not {n!r}")
        checked[t] = n
    if concurrency is None:
        total = sum(checked.values())
        if len(checked) < len(set(types)):
            total = max(DEFAULT_CONCURRENCY, total)
        return checked, total
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    over = {t: n for t, n in checked.items() if n > concurrency}
    if over:
        named = ", ".join(f"{t}={n}" for t, n in over.items())
        raise ConfigError(
            f"{named} is more than the worker's concurrency ({concurrency}): a type can never "
            "hold more than the worker's total; raise the concurrency or lower the cap"
        )
    return checked, concurrency


def describe(caps: Mapping[str, int]) -> str:
    """``launch=8,noop=64``: the caps as the heartbeat record and the CLI show them."""
    return ",".join(f"{t}={n}" for t, n in caps.items())


class TypeCaps:
    """The caps of a worker's types, over the deliveries it holds.

    Args:
        caps: type -> the most deliveries of it held at once (the types without one are not in
            it).
        held: what the worker holds, keyed by (type, entry id) (``WorkerState.running``).
    """

    __slots__ = ("_held", "_rotation", "caps")

    def __init__(self, caps: Mapping[str, int], held: Mapping[tuple[str, str], object]) -> None:
        self.caps = dict(caps)
        self._held = held
        # Where the remainder of a read's count goes next (as Reader._choose_types rotates).
        self._rotation = 0

    def held(self) -> collections.Counter[str]:
        """Deliveries held per type right now."""
        return collections.Counter(map(_type_of, self._held))

    def room(self, type_: str) -> int | None:
        """How many more of ``type_`` may be held now (None: it has no cap)."""
        cap = self.caps.get(type_)
        if cap is None:
            return None
        return cap - sum(1 for t, _ in self._held if t == type_)

    def shares(self, types: Sequence[str], free: int, acking: Mapping[str, int]) -> dict[str, int]:
        """How many entries to read of each type, ``free`` in all at most: as evenly as it goes,
        none over its room, what a capped type cannot take going to the others. A capped type
        with no room is left out (an empty answer: every type readable is full).

        ``acking``: per type, finished deliveries whose ack goes with this read (their slots are
        free once it is made, as the worker's total counts them).
        """
        held = self.held()
        caps = self.caps
        rooms: dict[str, int] = {}
        for t in types:
            cap = caps.get(t)
            room = free if cap is None else min(free, cap - held[t] + acking.get(t, 0))
            if room > 0:
                rooms[t] = room
        if not rooms:
            return {}
        out = dict.fromkeys(rooms, 0)
        open_ = list(rooms)
        at = self._rotation % len(open_)
        self._rotation = (at + free) % len(open_)
        open_ = open_[at:] + open_[:at]
        left = free
        # Each round shares what is left among the types with room; a round either shares all
        # of it or fills some type, so there are at most as many rounds as types.
        while left > 0 and open_:
            still: list[str] = []
            for t, n in zip(open_, split_count(left, len(open_), 0), strict=True):
                take = min(n, rooms[t] - out[t])
                out[t] += take
                left -= take
                if out[t] < rooms[t]:
                    still.append(t)
            if len(still) == len(open_):
                break  # nobody was filled: all of it was shared out
            open_ = still
        return {t: n for t, n in out.items() if n > 0}
