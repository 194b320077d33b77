"""What redis-py raises, said as the one error streamq raises: :class:`BackendError`.

Every message names the server by its redacted URL (never a password) and says what to do
when there is something to do.
"""

from __future__ import annotations

from redis import exceptions as rexc

from streamq.exceptions import BackendError

#: What redis-py raises: its errors, and the cluster client's own (not RedisError subclasses).
REDIS_ERRORS = (rexc.RedisError, rexc.RedisClusterException)


def backend_error(exc: BaseException, where: str, cluster: bool) -> BackendError:
    """``exc`` as a :class:`BackendError` about the server at ``where`` (a redacted URL)."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return BackendError(f"Redis at {where} refused the credentials: {exc}")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
        return BackendError(f"cannot reach Redis at {where}: {exc}")
    if isinstance(exc, rexc.RedisClusterException) and "cannot be connected" in str(exc):
        return BackendError(f"cannot reach the Redis cluster at {where}: {exc}")
    if isinstance(exc, rexc.ClusterError | rexc.RedisClusterException):
        return BackendError(f"the Redis cluster at {where} is not ready: {exc}")
    if cluster and isinstance(exc, rexc.AskError):  # MovedError included
        return BackendError(
            f"the Redis cluster at {where} is moving slot {exc.slot_id} to "
            f"{exc.host}:{exc.port}: try again"
        )
    if cluster and isinstance(exc, rexc.TryAgainError):
        return BackendError(
            f"the Redis cluster at {where} is migrating a slot, and its keys stayed split "
            f"while streamq tried again ({exc}): try again"
        )
    if not cluster and isinstance(exc, rexc.MovedError | rexc.AskError):
        return BackendError(
            f"Redis at {where} answered MOVED {exc}: the server is part of a cluster ("
            "add ?cluster=true to the URL, or set STREAMQ_CLUSTER=1)"
        )
    return BackendError(f"Redis at {where} answered an error: {exc}")
