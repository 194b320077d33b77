"""The dashboard's safety rules, as plain ASGI middleware (no web framework needed here).

- With a token (the default: the CLI makes one when none is given) every request carries it:
  an ``Authorization: Bearer`` header (scripts), or the cookie a browser gets when it opens the
  login URL (a page with ``?token=...``). The cookie holds its expiry and an HMAC of it keyed
  by the token, not the token: it lets a browser in for :data:`AUTH_MAX_AGE_S` at most (the
  server checks the expiry, not only the browser), and it is ``HttpOnly``, ``SameSite=Strict``
  and, when the dashboard serves TLS, ``Secure``.
- Without a token (``--no-token``, an explicit choice) the server listens on loopback only and
  answers only requests whose Host header names loopback, so a web page elsewhere cannot reach
  it through DNS rebinding.
- Every browser gets a random session cookie. Forms that change state carry a CSRF token, an
  HMAC of that session under a secret of this process, checked by :meth:`Guard.verify_csrf`;
  a state-changing request from another origin is refused before it gets that far.
- Every response forbids framing and sniffing and allows scripts and styles from this server
  only (Content-Security-Policy): even a value that escaped escaping could not run.
"""

from __future__ import annotations

import hashlib
import hmac
import http.cookies
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AUTH_COOKIE = "streamq_auth"
SESSION_COOKIE = "streamq_session"
#: where the middleware leaves the browser's session id in the ASGI scope
SESSION_SCOPE_KEY = "streamq.session"
#: a token shorter than this is refused at start-up
MIN_TOKEN_LENGTH = 16
#: how long the login cookie lets a browser in: a working day, then the login URL again
AUTH_MAX_AGE_S = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_COOKIE_FLAGS = "Path=/; HttpOnly; SameSite=Strict"

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name part of a Host header: ``[::1]:8081`` -> ``::1``, ``a:80`` -> ``a``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """The token, the CSRF secret and the rules; :meth:`wrap` puts them in front of an app.

    Args:
        token: every request must carry it; None: no token (loopback only, Host checked).
        clock: Unix time now (the login cookie's expiry is checked against it).
    """

    def __init__(self, *, token: str | None, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self._secret = secrets.token_bytes(32)
        self._clock = clock

    def csrf_token(self, session: str) -> str:
        """The CSRF token that forms of this ``session`` carry."""
        return hmac.new(self._secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def verify_csrf(self, session: str | None, value: str | None) -> bool:
        """Whether ``value`` is the CSRF token of ``session`` (constant-time)."""
        if not session or not value:
            return False
        return hmac.compare_digest(self.csrf_token(session), value)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind the rules of the module docstring."""
        return _GuardMiddleware(app, self)

    def token_ok(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        """Whether a request with these headers and cookies carries the token (or none is set):
        the header, or a login cookie that has not expired."""
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self.is_token(auth[7:].strip()):
            return True
        expires, _, mac = cookies.get(AUTH_COOKIE, "").partition(".")
        # Whatever a client sent: ASCII digits only (int() takes other digits, compare_digest
        # no non-ASCII text).
        if not (expires.isascii() and expires.isdigit()):
            return False
        if not hmac.compare_digest(mac.encode(), self._auth_mac(expires).encode()):
            return False
        return self._clock() < int(expires)

    def is_token(self, value: str) -> bool:
        """Whether ``value`` is the token (constant-time)."""
        return self.token is not None and hmac.compare_digest(value.encode(), self.token.encode())

    def _auth_mac(self, expires: str) -> str:
        assert self.token is not None
        msg = b"streamq-web-auth:" + expires.encode()
        return hmac.new(self.token.encode(), msg, hashlib.sha256).hexdigest()

    def auth_cookie(self, *, tls: bool) -> bytes:
        """The Set-Cookie value that lets a browser in for :data:`AUTH_MAX_AGE_S` from now."""
        expires = str(int(self._clock()) + AUTH_MAX_AGE_S)
        value = f"{expires}.{self._auth_mac(expires)}"
        return f"{AUTH_COOKIE}={value}; Max-Age={AUTH_MAX_AGE_S}; {cookie_flags(tls)}".encode()


def cookie_flags(tls: bool) -> str:
    """The attributes of every cookie the dashboard sets: ``Secure`` too when it serves TLS."""
    return f"{_COOKIE_FLAGS}; Secure" if tls else _COOKIE_FLAGS


def _cookies(header: str) -> dict[str, str]:
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    try:
        jar.load(header)
    except http.cookies.CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


class _GuardMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers.get("cookie", ""))
        api = scope["path"].startswith("/api/")
        tls = scope.get("scheme") == "https"
        host = headers.get("host", "")
        guard = self.guard
        if guard.token is None and not is_loopback(_host_name(host)):
            await _refuse(
                send, 400, f"this dashboard answers only to loopback names, not {host!r}", api
            )
            return
        extra: list[tuple[bytes, bytes]] = []
        if not guard.token_ok(headers, cookies):
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given and guard.is_token(given[-1]):
                # A browser's first visit: remember the token (as its HMAC) and drop it from the
                # address, so it stays out of the history and of links.
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                await _send(
                    send,
                    303,
                    b"",
                    [
                        (b"location", (scope["path"] + (f"?{rest}" if rest else "")).encode()),
                        (b"set-cookie", guard.auth_cookie(tls=tls)),
                    ],
                )
                return
            await _refuse(
                send,
                401,
                "this dashboard needs its token: open the login URL that streamq web printed "
                "(a page with ?token=...), or send Authorization: Bearer TOKEN",
                api,
            )
            return
        if scope["method"] not in _SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
                await _refuse(send, 403, "refused: the request comes from another site", api)
                return
        session = cookies.get(SESSION_COOKIE, "")
        if not (16 <= len(session) <= 64 and session.replace("-", "").replace("_", "").isalnum()):
            session = secrets.token_urlsafe(24)
            cookie = f"{SESSION_COOKIE}={session}; {cookie_flags(tls)}"
            extra.append((b"set-cookie", cookie.encode()))
        scope[SESSION_SCOPE_KEY] = session

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, *SECURITY_HEADERS]}
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, status: int, message: str, api: bool) -> None:
    """One line of text, or ``{"error": ...}`` under /api/."""
    if api:
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = (message + "\n").encode(), b"text/plain; charset=utf-8"
    await _send(send, status, body, [(b"content-type", kind)])
