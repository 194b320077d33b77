"""Periodic jobs on the server: the last-tick marker of each schedule and firing a tick
(``tick.lua``: the marker and the append in one script)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from streamq.backends._base import Fields
from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._producer import Producer
from streamq.backends.redis._replies import text
from streamq.backends.redis._shared import Shared


class Ticks:
    """Fires ticks and reads the markers: ``{prefix}:{TYPE}:ticks``, a hash of schedule name
    to the last fired tick's time (epoch ms), in partition 0's slot (the meta key's)."""

    def __init__(self, shared: Shared, groups: StreamGroups, producer: Producer) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._scripts = shared.scripts
        self._groups = groups
        self._producer = producer

    async def fire_tick(self, type: str, schedule: str, tick_ms: int, fields: Fields) -> bool:
        """Append the tick's job unless the tick (or a later one) already fired.

        The job goes to the stream an enqueue would choose. When that stream shares the
        marker's slot, or the server is not a cluster, marker and append are one script; on a
        cluster with the stream in another slot, the marker is written first and the job
        appended next (a worker that dies between the two loses that tick: docs/periodic.md).
        """
        keys = self._keys
        if keys.stale([type], time.monotonic()):
            await self._groups.learn_partition_counts([type], grow=True)
        ticks = keys.ticks_key(type)
        stream = keys.stream_for_new_job(type, fields)
        args: list[str | bytes | int] = [schedule, tick_ms]
        for k, v in fields.items():
            args += (k, v)
        same_slot = not self._wire.cluster or stream.slot == keys.ticks_slot(type)
        names = [ticks, stream.jobs, stream.stats] if same_slot else [ticks]
        reply = await self._scripts.call("tick", names, args)
        if reply == 0:
            return False
        if not same_slot:
            await self._producer.enqueue_many([(type, fields)])
        return True

    async def last_ticks(self, type: str, schedules: Sequence[str]) -> dict[str, int | None]:
        """The last fired tick of each schedule (None when none fired)."""
        if not schedules:
            return {}
        wire = self._wire
        await wire.connect()
        try:
            values = await wire.client.hmget(self._keys.ticks_key(type), list(schedules))
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc
        return {
            name: None if v is None else int(text(v))
            for name, v in zip(schedules, values, strict=True)
        }
