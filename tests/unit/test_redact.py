"""redact_url: no password is ever shown, wherever it sits in a Redis URL."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamq._server import _free_port
from streamq._urls import redact_url
from streamq.backends.redis import RedisBackend
from streamq.exceptions import BackendError, StreamqError

# Passwords are drawn from letters no other part of the generated URLs (nor an error message)
# uses: any one of them in the output is a leak.
SECRET = "ΩΨΦж"
_SPECIAL = "@:/?#&=%+;[]!$'()*,~ "
passwords = st.text(alphabet=SECRET + _SPECIAL, min_size=1, max_size=12).map(lambda p: "Ω" + p)
# A raw (not percent-encoded) password in a query value: what splits a query ends the value.
query_passwords = st.text(alphabet=SECRET + ":/?=%+[]!$'()*,~", max_size=12).map(lambda p: "Ψ" + p)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8)
hosts = st.one_of(
    names.filter(lambda h: not h.startswith(".")),
    st.sampled_from(["127.0.0.1", "[::1]", "[2001:db8::7]", "[fe80::1%25eth0]", "localhost"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.sampled_from(["", "/", "/0", "/15"])
extras = st.sampled_from(["", "db=1", "cluster=false", "socket_timeout=5", "username=bob"])
schemes = st.sampled_from(["redis", "rediss", "unix"])


def _leaks(text: str) -> set[str]:
    return set(SECRET) & set(text)


def _query(*pieces: str) -> str:
    pieces = tuple(p for p in pieces if p)
    return "?" + "&".join(pieces) if pieces else ""


@st.composite
def urls(draw: st.DrawFn) -> str:
    """A Redis URL with a password somewhere: userinfo (encoded or raw), query, or both."""
    scheme, user, host = draw(schemes), draw(st.one_of(st.just(""), names)), draw(hosts)
    where = host + draw(ports) + draw(paths)
    if scheme == "unix":
        where = "/tmp/streamq/server.sock"
    pw = draw(passwords)
    extra = draw(extras)
    shape = draw(st.sampled_from(["userinfo", "raw-userinfo", "query", "raw-query", "both"]))
    if shape == "userinfo":
        return f"{scheme}://{quote(user)}:{quote(pw, safe='')}@{where}{_query(extra)}"
    if shape == "raw-userinfo":
        return f"{scheme}://{user}:{pw}@{where}{_query(extra)}"
    if shape == "query":
        key = draw(st.sampled_from(["password", "pass%77ord", "ssl_password"]))
        return f"{scheme}://{where}{_query(extra, f'{key}={quote_plus(pw)}')}"
    if shape == "raw-query":
        return f"{scheme}://{where}{_query(f'password={draw(query_passwords)}', extra)}"
    return f"{scheme}://{user}:{quote(pw, safe='')}@{where}{_query(f'password={quote(pw)}')}"


@given(urls())
def test_redact_url_never_shows_a_password(url: str) -> None:
    """No character of the password reaches redact_url's output, for any URL shape."""
    assert not _leaks(redact_url(url)), (url, redact_url(url))


@given(urls())
def test_backend_repr_and_config_errors_never_show_a_password(url: str) -> None:
    """repr(RedisBackend(url)), or the ConfigError for a URL it refuses, never has the password."""
    try:
        shown = repr(RedisBackend(url))
    except StreamqError as exc:
        shown = str(exc)
    assert not _leaks(shown), (url, shown)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://user:s3cret@[2001:db8::7]/2", "redis://user:***@[2001:db8::7]/2"),
        ("redis://[::1]:6379/0?password=s3cret", "redis://[::1]:6379/0?password=***"),
        ("redis://h:1/0?db=1&password=s3cret&x=2", "redis://h:1/0?db=1&password=***&x=2"),
        ("redis://u:s3cret@h/0?password=s3cret", "redis://u:***@h/0?password=***"),
        ("unix://:s3cret@/tmp/s.sock?db=0", "unix://:***@/tmp/s.sock?db=0"),
        ("unix:///tmp/s.sock?password=s3cret", "unix:///tmp/s.sock?password=***"),
        ("rediss://h?Password=s3cret#frag", "rediss://h?Password=***#***"),
        ("redis://:s3cret@h:7000?cluster=true", "redis://:***@h:7000?cluster=true"),
        ("redis://user@Host.Example:6379/0", "redis://user@Host.Example:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://[::1/0", "<unparseable url>"),
        ("redis://u:s3c/ret@h/0", "<unparseable url>"),
        ("redis://u:1/s3cret@h/0", "<unparseable url>"),
        ("redis://u:s3c#ret@h", "<unparseable url>"),
    ],
)
def test_redact_url_keeps_the_rest(url: str, shown: str) -> None:
    """Only the secret goes: brackets of IPv6 hosts, case, port, db and options stay as given."""
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@127.0.0.1:{port}/0",
        "redis://user:s3cret@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password=s3cret",
        "redis://user@127.0.0.1:{port}/0?password=s3cret&db=0",
    ],
)
async def test_refused_connection_error_never_shows_the_password(url: str) -> None:
    """The BackendError of a refused connection names the server but not its password."""
    backend = RedisBackend(url.format(port=_free_port()))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.stats("t")
    finally:
        await backend.aclose()
    assert "cannot reach Redis at redis://" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(backend)
