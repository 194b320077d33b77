"""Entries a consumer holds (its share of the PEL), besides acking them: renewing their leases,
retrying one later (into the schedule), handing them back, dead-lettering one, leaving the
group, and claiming idle entries back (recovery). Each is one script call per stream,
checking ownership and changing the PEL atomically."""

from __future__ import annotations

import time
from collections.abc import Sequence

from streamq.backends._base import (
    F_UNIQUE,
    HANDED_BACK,
    Claimed,
    DeadLetter,
    Delivery,
    Fields,
    JobEnd,
)
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._replies import as_fields, text
from streamq.backends.redis._shared import Shared
from streamq.exceptions import BackendError


class Leases:
    """What a consumer does with the entries it holds, and claims from others."""

    def __init__(self, shared: Shared, groups: StreamGroups) -> None:
        self._keys = shared.keys
        self._groups = groups
        self.group = shared.group
        self._call = shared.scripts.call

    async def refresh(self, type: str, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Lease heartbeat: one script call per stream; returns the ids lost.

        Every stream is refreshed even when one fails (a broken partition must not cost the
        others their leases); the failures are raised together afterwards.
        """
        located = self._keys.ids_by_stream(type, entry_ids)
        lost = list(located.bad)
        failed: list[str] = []
        streams = [(s, ids) for s, ids in located.items() if ids]
        for s, ids in streams:
            try:
                gone = await self._call("refresh", [s.jobs], [self.group, consumer, *ids])
            except BackendError as exc:
                failed.append(f"{s.jobs}: {exc}")
                continue
            lost += (located.ref(s, text(x)) for x in gone)
        if failed:
            raise BackendError(
                f"lease refresh failed on {len(failed)} of {len(streams)} streams of {type!r} "
                f"(the others were refreshed): {'; '.join(failed)}"
            )
        return lost

    async def retry_later(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        *,
        delay_ms: int,
        deliveries: int,
        error: str,
    ) -> int:
        """Move a failed entry into its stream's schedule (``retry.lua``): see
        :meth:`Backend.retry_later`."""
        located = self._keys.ids_by_stream(type, [entry_id])
        if located.bad:
            return 0  # no entry of this type has that id: nobody owns it
        ((s, (plain,)),) = located.items()
        due = await self._call(
            "retry",
            [s.jobs, s.scheduled, s.stats],
            [self.group, consumer, plain, max(0, int(delay_ms)), deliveries, error],
        )
        return int(due)

    async def release(
        self, type: str, consumer: str, entry_ids: Sequence[str], idle_ms: int
    ) -> None:
        """Make owned entries claimable by others now, the interrupted delivery not counted
        (shutdown with unfinished jobs): one ``handback.lua`` call per stream."""
        for s, ids in self._keys.ids_by_stream(type, entry_ids).items():
            if ids:
                await self._call("handback", [s.jobs], [self.group, consumer, idle_ms, *ids])

    async def dead_letter(
        self,
        type: str,
        consumer: str,
        entry_id: str,
        letter: DeadLetter,
        max_dead: int,
        fields: Fields | None = None,
        end: JobEnd | None = None,
    ) -> bool:
        """Move an owned entry to the dead stream (with ``fields``, releasing a unique job's
        key: ``dead.lua`` reads the job id and ``unique_for`` from the entry; with ``end``,
        deleting its end-of-job keys), atomically."""
        located = self._keys.ids_by_stream(type, [entry_id])
        if located.bad:
            return False  # no entry of this type has that id: nobody owns it
        ((s, (plain,)),) = located.items()
        unique = None if fields is None else fields.get(F_UNIQUE)
        ends = s.end_keys(end) if end is not None else []
        keys = [s.jobs, s.dead, s.stats, *ends]
        if unique is not None:
            keys.append(s.unique(unique.decode()))
        meta = {
            "reason": letter.reason,
            "error": letter.error,
            "deliveries": str(letter.deliveries),
            "entry_id": entry_id,
            "dead_at": f"{time.time():.3f}",
        }
        n = await self._call(
            "dead",
            keys,
            [
                self.group,
                consumer,
                plain,
                max_dead,
                1 if letter.failed else 0,
                len(ends),
                *[x for kv in meta.items() for x in kv],
            ],
        )
        return int(n) == 1

    async def remove_consumer(self, type: str, consumer: str, *, hand_over: bool = False) -> bool:
        """XGROUP DELCONSUMER, only when the consumer holds nothing (checked in the script; with
        ``hand_over`` the script first passes what it holds to HANDED_BACK); True when it is
        gone from every stream of the type."""
        await self._groups.refresh_partition_counts([type])
        removed = True
        heir = HANDED_BACK if hand_over else ""
        for s in self._keys.streams(type):
            try:
                n = await self._call("forget", [s.jobs], [self.group, consumer, heir])
            except BackendError as exc:
                if "NOGROUP" in str(exc):
                    removed = False
                    continue
                raise
            removed = removed and int(n) == 1
        return removed

    async def claim_idle(
        self, type: str, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """XAUTOCLAIM with the delivery counts of what it claimed.

        On a partitioned type one call goes on from partition to partition until it has
        claimed ``count`` or seen every partition once; the cursor (``P/ID``) says where the
        next call resumes.
        """
        await self._groups.refresh_partition_counts([type])
        streams = self._keys.streams(type)
        if len(streams) == 1:
            return await self._claim_idle_on(streams[0], consumer, min_idle_ms, count, cursor)
        if "@" in cursor:  # an entry id: resume from that entry
            p, at = self._keys.split(type, cursor)
        else:
            head, _, at = cursor.rpartition("/")
            p = int(head) if head.isdigit() and int(head) < len(streams) else 0
        deliveries: list[Delivery] = []
        deleted: list[str] = []
        for _ in streams:
            got = await self._claim_idle_on(
                streams[p], consumer, min_idle_ms, count - len(deliveries), at
            )
            deliveries += got.deliveries
            deleted += got.deleted
            if got.cursor != "0-0":
                return Claimed(f"{p}/{got.cursor}", deliveries, deleted)
            p, at = (p + 1) % len(streams), "0-0"
            if len(deliveries) >= count:
                break
        return Claimed(f"{p}/0-0", deliveries, deleted)

    async def _claim_idle_on(
        self, s: StreamKeys, consumer: str, min_idle_ms: int, count: int, cursor: str
    ) -> Claimed:
        """One ``claim.lua`` call on one stream (a lost group is created again: nothing to
        claim then)."""
        try:
            nxt, entries, deleted, counts = await self._call(
                "claim", [s.jobs], [self.group, consumer, min_idle_ms, cursor, count]
            )
        except BackendError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._groups.ensure([s.type])
            return Claimed("0-0", [], [])
        deliveries = [
            Delivery(s.type, s.ref(text(e[0])), as_fields(e[1]), int(n))
            for e, n in zip(entries, counts, strict=True)
        ]
        return Claimed(text(nxt), deliveries, [s.ref(text(d)) for d in deleted])
