"""Redis URLs: showing one without its secrets, and streamq's own query option (``cluster=``).

Pure functions on strings, imported by the settings, the CLI and the Redis backend alike.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from streamq.exceptions import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
#: shown instead of a URL whose password cannot be told apart from the rest
UNPARSEABLE = "<unparseable url>"
#: what urlsplit strips from the start of a URL
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
#: query options whose value is a secret when their name holds one of these
_SECRET_WORDS = ("pass", "secret", "token", "credential")


def redact_url(url: str) -> str:
    """The URL with every password replaced by ``***`` (safe to log or print).

    A password can sit in the userinfo (``redis://user:pw@host``) or in the query
    (``?password=pw``, which redis-py accepts too, as any ``*password*`` option); both go. The
    rest is shown as written (IPv6 brackets, case, port). A URL whose parts cannot be told apart
    for sure (a stray ``@``, ``/`` or ``#`` in a password that was not percent-encoded) is shown
    as ``<unparseable url>``, never half-redacted.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number, e.g. "u:pw/x@h"
    except ValueError:
        return UNPARSEABLE
    if "@" in parts.path + parts.query + parts.fragment:
        # An "@" past the host means the userinfo ended early: the host part is a password's.
        return UNPARSEABLE
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = "".join(_redact_option(piece) for piece in re.split(r"([&;])", parts.query) if piece)
    # Built by hand: urlunsplit drops the "//" of an empty host (unix:///path).
    text = f"{parts.scheme}:" if parts.scheme else ""
    after = url.lstrip(_C0_OR_SPACE)[len(text) :]
    if netloc or after.startswith("//"):
        text += f"//{netloc}"
    text += parts.path + (f"?{query}" if query else "")
    # A fragment means nothing to Redis: not worth the risk of showing.
    return text + ("#***" if parts.fragment else "")


def _redact_option(piece: str) -> str:
    """One ``name=value`` of a query, its value hidden when the name is a secret's."""
    name, eq, _value = piece.partition("=")
    if eq and any(word in unquote_plus(name).lower() for word in _SECRET_WORDS):
        return f"{name}=***"
    return piece


def cluster_flag(url: str) -> tuple[str, bool | None]:
    """The URL without its ``cluster=`` query option, and that option (None when absent)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [v.lower() for k, v in query if k == "cluster"]
    if not flags:
        return url, None
    if flags[-1] not in _TRUE + _FALSE:
        raise ConfigError(f"invalid cluster={flags[-1]!r} in the Redis URL: use true or false")
    rest = urlencode([(k, v) for k, v in query if k != "cluster"])
    return urlunsplit(parts._replace(query=rest)), flags[-1] in _TRUE
