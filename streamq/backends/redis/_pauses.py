"""Paused job types: the mark each type's workers poll (``pause.lua`` sets it, DEL clears it).

``{prefix}:{TYPE}:paused`` is a hash (``since_ms``: the server's time of the pause, ``reason``),
in partition 0's slot (the meta key's); no key means not paused. The workers read the marks of
all the types they serve in one exchange (one per node on a cluster, all at once), every
:data:`~streamq._worker.pausing.POLL_EVERY`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamq.backends._base import PauseRecord
from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._replies import as_fields, text
from streamq.backends.redis._shared import Shared


class Pauses:
    """Sets, clears and reads the types' paused marks."""

    def __init__(self, shared: Shared) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._scripts = shared.scripts
        self._send = shared.router.send_to_owners

    async def pause(self, type: str, reason: str) -> bool:
        """Mark ``type`` paused (the server's time, ``reason``); False when it already was."""
        return bool(await self._scripts.call("pause", [self._keys.paused_key(type)], [reason]))

    async def resume(self, type: str) -> bool:
        """Delete ``type``'s mark; False when there was none."""
        wire = self._wire
        await wire.connect()
        try:
            return bool(await wire.client.delete(self._keys.paused_key(type)))
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc

    async def paused(self, types: Sequence[str]) -> dict[str, PauseRecord]:
        """The marks of ``types`` (HGETALL each, one exchange per node): the paused ones."""
        if not types:
            return {}
        keys = [self._keys.paused_key(t) for t in types]
        replies = await self._send("pauses", [(k, ("HGETALL", k)) for k in keys])
        out: dict[str, PauseRecord] = {}
        for t, reply in zip(types, replies, strict=True):
            if isinstance(reply, BaseException):
                raise self._wire.backend_error(reply)
            record = _record(reply)
            if record is not None:
                out[t] = record
        return out


def _record(reply: Any) -> PauseRecord | None:
    """A mark's HGETALL reply (a RESP2 flat list or a RESP3 map) as its record; None for none."""
    if not reply:
        return None
    fields = reply if isinstance(reply, dict) else as_fields(reply)
    raw = fields.get(b"since_ms", b"0")
    try:
        since = int(raw)
    except ValueError:  # written by hand: still paused, since an unknown time
        since = 0
    return PauseRecord(since, text(fields.get(b"reason", b"")))
