"""Running the dashboard: bind the socket ourselves, then hand it to uvicorn.

The only module that imports uvicorn. Binding (and listening) first turns a port in use into
one error line (uvicorn would log and exit) and lets ``--port 0`` report the port picked.
"""

from __future__ import annotations

import socket
from pathlib import Path

import uvicorn

from streamq._web._guard import ASGIApp
from streamq.exceptions import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (ConfigError if it cannot).

    It listens at once, so a client that connects as soon as the address is announced waits
    in the backlog until uvicorn accepts, instead of being refused.
    """
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def serve(
    app: ASGIApp, sock: socket.socket, *, tls_cert: Path | None = None, tls_key: Path | None = None
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM (uvicorn's own handling); HTTPS with
    ``tls_cert`` and ``tls_key``."""
    config = uvicorn.Config(
        app,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_level="warning",
        access_log=False,
        # Leave logging alone: the CLI configured structlog, uvicorn's warnings go to stderr.
        log_config=None,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve(sockets=[sock])
