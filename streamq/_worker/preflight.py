"""Checks a worker makes of the server once at start: settings that can lose jobs."""

from __future__ import annotations

from streamq._logging import logger
from streamq.backends._base import Backend
from streamq.exceptions import BackendError


async def check_eviction_policy(backend: Backend) -> None:
    """Warn when the server may evict keys: under any ``maxmemory-policy`` but ``noeviction``
    a full server deletes whole job streams (jobs, their PEL, the dead letters) to make room.

    Never fails the start: when the server refuses to tell, it says so at INFO.
    """
    try:
        policy = await backend.eviction_policy()
    except BackendError as exc:
        logger.info("streamq.server.eviction_policy", checked=False, error=str(exc))
        return
    if policy is None:
        logger.info(
            "streamq.server.eviction_policy",
            checked=False,
            note="could not check maxmemory-policy (CONFIG GET refused); it must be "
            "noeviction, or a full server evicts whole job streams",
        )
        return
    if policy != "noeviction":
        logger.warning(
            "streamq.server.eviction_policy",
            policy=policy,
            note="a full server evicts keys under this policy, whole job streams included: "
            "set maxmemory-policy noeviction (docs/reliability.md)",
        )
