"""Settings from the environment: which server (``resolve_url``), and the backend (``connect``).

The embedded-server fallback is announced here, once per process and server. The URL helpers
(``redact_url``, ``cluster_flag``) live in :mod:`streamq._urls`; ``redact_url`` is re-exported
so that what shows a URL and what resolves one are imported from one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from streamq._logging import logger
from streamq._urls import redact_url
from streamq.backends._base import Backend
from streamq.backends._partitions import Partitions, parse_partitions
from streamq.exceptions import ConfigError

__all__ = [
    "EMBEDDED_URL",
    "announce_embedded",
    "connect",
    "embedded_allowed",
    "is_embedded_url",
    "redact_url",
    "resolve_url",
]

#: The URL form that asks for the embedded server explicitly (``STREAMQ_REDIS_URL=embedded:``).
EMBEDDED_URL = "embedded:"
# (pid, socket URL) pairs already announced: the fallback is said once per process and server.
_announced_servers: set[tuple[int, str]] = set()


def is_embedded_url(url: str) -> bool:
    """Whether ``url`` is the explicit ``embedded:`` form."""
    return url.strip().lower() == EMBEDDED_URL


def embedded_allowed() -> bool:
    """Whether a missing URL may fall back to the embedded server (``STREAMQ_EMBEDDED``)."""
    raw = os.environ.get("STREAMQ_EMBEDDED", "").strip().lower()
    if raw not in ("", "1", "true", "yes", "0", "false", "no"):
        raise ConfigError(f"STREAMQ_EMBEDDED={raw!r} must be 1 or 0")
    return raw not in ("0", "false", "no")


def resolve_url(url: str | None = None, *, announce: bool = True) -> str:
    """``url``, else ``STREAMQ_REDIS_URL``, else the embedded server (started on demand).

    The embedded server is a machine-local one (see ``streamq server``): a producer deployed
    without ``STREAMQ_REDIS_URL`` would enqueue into its own machine. So the fallback is never
    silent: it is logged once per process (``streamq.embedded_server``, at WARNING, naming the
    socket; at INFO when asked for with the ``embedded:`` URL), unless ``announce`` is false
    (the CLI says so on stderr instead). With ``STREAMQ_EMBEDDED=0`` a missing URL is a
    :class:`ConfigError`.
    """
    url = url or os.environ.get("STREAMQ_REDIS_URL") or None
    if url is not None and not is_embedded_url(url):
        return url
    if url is None and not embedded_allowed():
        raise ConfigError(
            "STREAMQ_REDIS_URL is not set and STREAMQ_EMBEDDED=0 forbids the embedded server: "
            "set STREAMQ_REDIS_URL=redis://HOST:6379/0 (or STREAMQ_REDIS_URL=embedded: for "
            "the machine-local server)"
        )
    from streamq._server import ensure_server  # lazy: only when no URL is given

    embedded = ensure_server()
    if announce:
        announce_embedded(embedded, asked_for=url is not None)
    return embedded


def announce_embedded(embedded: str, *, asked_for: bool) -> None:
    """Log, once per process and server, that jobs go to the embedded server at ``embedded``.

    At INFO when it was ``asked_for`` (the ``embedded:`` URL), else at WARNING with a hint: a
    missing ``STREAMQ_REDIS_URL`` in a deployed producer is a mistake worth seeing.
    """
    if (os.getpid(), embedded) in _announced_servers:
        return
    _announced_servers.add((os.getpid(), embedded))
    if asked_for:
        logger.info("streamq.embedded_server", socket=embedded.removeprefix("unix://"))
    else:
        logger.warning(
            "streamq.embedded_server",
            socket=embedded.removeprefix("unix://"),
            hint="STREAMQ_REDIS_URL is not set: jobs go to this machine's embedded server; "
            "set it to your Redis, or STREAMQ_EMBEDDED=0 to make a missing URL an error",
        )


def connect(
    url: str | None = None,
    *,
    prefix: str | None = None,
    partitions: Mapping[str, Partitions | int] | None = None,
) -> Backend:
    """A Redis backend for ``url`` (see :func:`resolve_url`).

    Settings not given here come from the environment:

    - ``STREAMQ_REDIS_URL`` and ``STREAMQ_EMBEDDED``: the server (see :func:`resolve_url`);
    - ``STREAMQ_PREFIX``: the key prefix (default ``streamq``);
    - ``STREAMQ_SOCKET_TIMEOUT``: seconds a silent server may take before a call fails
      (default 10);
    - ``STREAMQ_CLUSTER=1``: use the Redis Cluster client (as ``?cluster=true`` in the URL);
    - ``STREAMQ_PARTITIONS``: partitioned types, e.g. ``launch=3,report=4:account_id``;
    - ``STREAMQ_WAIT_REPLICAS`` and ``STREAMQ_WAIT_TIMEOUT_MS``: after each enqueue, wait until
      that many replicas have the jobs (default 0: do not wait; timeout 1000 ms).
    """
    from streamq.backends.redis import RedisBackend  # lazy: importing streamq stays light

    socket_timeout = _env_number("STREAMQ_SOCKET_TIMEOUT", "10", float)
    if socket_timeout <= 0:
        raise ConfigError(f"STREAMQ_SOCKET_TIMEOUT={socket_timeout!r} must be positive")
    cluster_env = os.environ.get("STREAMQ_CLUSTER", "").strip().lower()
    if cluster_env not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"STREAMQ_CLUSTER={cluster_env!r} must be 1 or 0")
    if partitions is None:
        partitions = parse_partitions(os.environ.get("STREAMQ_PARTITIONS", ""))
    return RedisBackend(
        resolve_url(url),
        prefix=prefix or os.environ.get("STREAMQ_PREFIX", "streamq"),
        socket_timeout=socket_timeout,
        cluster=True if cluster_env in ("1", "true", "yes") else None,
        partitions=partitions,
        wait_replicas=int(_env_number("STREAMQ_WAIT_REPLICAS", "0", int)),
        wait_timeout_ms=int(_env_number("STREAMQ_WAIT_TIMEOUT_MS", "1000", int)),
    )


def _env_number(name: str, default: str, kind: Callable[[str], float]) -> float:
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        what = "a number of seconds" if kind is float else "a whole number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} cannot be negative")
    return value
