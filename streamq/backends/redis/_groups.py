"""What must exist on the server before a type is read: its consumer groups, and the partition
count and level streams it records (``partitions.lua``), learned again every ``relearn_s`` by
every process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis import exceptions as rexc

from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._shared import Shared
from streamq.exceptions import BackendError


def too_old(version: object) -> str | None:
    """``version`` (INFO's ``redis_version``) when it is older than 7.0, else None."""
    major = str(version or "").split(".", 1)[0]
    return str(version) if major.isdigit() and int(major) < 7 else None


class StreamGroups:
    """Creates the streams and groups of types, and keeps their partition counts current."""

    def __init__(self, shared: Shared) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._scripts = shared.scripts
        self._router = shared.router
        self.group = shared.group
        self._version_checked = False

    async def learn_partition_counts(
        self, types: Sequence[str], *, grow: bool = False, levels: Sequence[str] = ()
    ) -> list[str]:
        """Read the partition counts the server records for ``types`` (first raising them to
        this process's setting when ``grow``) and whether they have level streams (first
        recording it for the types in ``levels``); returns the types whose streams changed
        here."""
        keys, call = self._keys, self._scripts.call
        changed = []
        now = time.monotonic()
        for t in types:
            want = keys.wanted_count(t) if grow else 0
            n, levelled = await call(
                "partitions", [keys.meta_key(t)], [want, 1 if t in levels else 0]
            )
            if keys.record_count(t, int(n), now, bool(int(levelled))):
                changed.append(t)
        return changed

    async def refresh_partition_counts(self, types: Sequence[str]) -> None:
        """Learn the partition counts of ``types`` not learned in the last ``relearn_s``; a type
        that gained partitions gets its new streams' groups."""
        stale = self._keys.stale(types, time.monotonic())
        if stale and (grown := await self.learn_partition_counts(stale)):
            await self.ensure(grown)

    async def ensure(self, types: Sequence[str]) -> None:
        """Create each stream and its group from id 0 (so no earlier job is skipped)."""
        if not self._version_checked:
            await self._check_version()
        await self.learn_partition_counts(types, grow=True)
        client, wire = self._wire.client, self._wire
        for t in types:
            for s in self._keys.streams(t):
                try:
                    await client.xgroup_create(s.jobs, self.group, id="0", mkstream=True)
                except rexc.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise wire.backend_error(exc) from exc
                except REDIS_ERRORS as exc:
                    raise wire.backend_error(exc) from exc

    async def _check_version(self) -> None:
        """Refuse a server older than Redis 7.0: recovery (claim.lua) needs the deleted ids
        XAUTOCLAIM lists from 7.0 on. A server that does not say (INFO refused) is trusted."""
        for info in await self._router.on_every_master("INFO", "server"):
            if isinstance(info, dict) and (version := too_old(info.get("redis_version"))):
                raise BackendError(
                    f"Redis at {self._wire.where} is version {version}: streamq needs "
                    "Redis 7.0 or later, or Valkey"
                )
        self._version_checked = True
