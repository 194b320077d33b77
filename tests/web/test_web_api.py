"""``streamq web`` over HTTP: the JSON API against the CLI's --json, the actions and the guards.

Real processes throughout: a ``streamq web`` subprocess, ``streamq consume`` workers and the
CLI itself, on the session's server, with real jobs in each state.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import error_lines
from typer.testing import CliRunner
from web_helpers import Web, consumer_of
from worker_procs import Workers, wait_until

from streamq import Job, SyncQueue
from streamq._cli import app
from streamq._web._guard import AUTH_COOKIE, SESSION_COOKIE, Guard
from streamq._web._history import History

FAST = ("--claim-after", "2s", "--heartbeat", "300ms", "--retry-base", "50ms")
TOKEN = "a-token-of-24-characters"


def row(rows: list[dict[str, Any]], type: str) -> dict[str, Any]:
    """The stats row of ``type``."""
    (found,) = [r for r in rows if r["type"] == type]
    return found


def stats_of(queue: SyncQueue, type: str) -> Any:
    """The type's stats through the API (cheap to poll)."""
    (s,) = queue.stats([type])
    return s


def cli_json(redis_url: str, prefix: str, *args: str) -> Any:
    """What ``streamq ARGS --json`` prints, parsed (the app run in this process: quicker)."""
    result = CliRunner().invoke(app, [*args, "--json", "--url", redis_url, "--prefix", prefix])
    assert result.exit_code == 0, f"streamq {' '.join(args)}: {result.output}"
    return json.loads(result.stdout)


def csrf_of(html: str) -> str:
    """The CSRF token of the forms on a page."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_api_serves_what_the_cli_prints(
    workers: Workers,
    queue: SyncQueue,
    start_web: Callable[..., Web],
    redis_url: str,
    prefix: str,
) -> None:
    """With jobs processed, running, waiting and dead, each endpoint answers the --json of
    its CLI command (the same objects), and the pages show the same jobs."""
    workers.redis.set(f"{prefix}:flaky:fail", 1)
    sleeper = workers.start("-c", "1", *FAST, types=("sleepy",))
    failer = workers.start("--max-deliveries", "2", *FAST, types=("flaky",))
    quick = queue.enqueue_many([Job(type="sleepy", args={"sleep": 0}) for _ in range(3)])
    wait_until(lambda: len(workers.counts("done")) == 3, 30, "3 quick jobs done")
    long_id = queue.enqueue(Job(type="sleepy", args={"sleep": 60}))
    wait_until(lambda: long_id in workers.counts("started"), 20, "the long job started")
    waiting = queue.enqueue_many([Job(type="sleepy", args={"sleep": 0}) for _ in range(2)])
    dead = queue.enqueue_many([Job(type="flaky", args={}) for _ in range(2)])
    wait_until(lambda: stats_of(queue, "flaky").dead == 2, 30, "2 flaky jobs dead")
    sleeper_name, failer_name = consumer_of(workers, sleeper), consumer_of(workers, failer)

    web = start_web()

    def cli(*args: str) -> Any:
        return cli_json(redis_url, prefix, *args)

    with web.client() as http:
        stats = http.get("/api/stats").json()
        sleepy, flaky = row(stats, "sleepy"), row(stats, "flaky")
        assert (sleepy["waiting"], sleepy["in_flight"], sleepy["processed"]) == (2, 1, 3)
        assert sleepy["consumers"][sleeper_name]["in_flight"] == 1
        assert (flaky["dead"], flaky["failed"], flaky["retried"], flaky["processed"]) == (
            2,
            4,
            2,
            0,
        )
        assert flaky["dead_lettered"] == 2
        for got, printed in zip(stats, cli("stats"), strict=True):
            # The same object; only the clocks moved between the two reads.
            oldest = got.pop("oldest_in_flight_s"), printed.pop("oldest_in_flight_s")
            assert (oldest[0] is None) == (oldest[1] is None)
            assert list(got.pop("consumers")) == list(printed.pop("consumers"))
            assert list(got) == list(printed)
            assert got == printed
        assert http.get("/api/stats", params={"type": "flaky"}).json()[0]["dead"] == 2

        pending = http.get("/api/pending/sleepy").json()
        assert [(p["job_id"], p["consumer"], p["deliveries"]) for p in pending] == [
            (long_id, sleeper_name, 1)
        ]
        (printed_pending,) = cli("pending", "sleepy")
        assert list(pending[0]) == list(printed_pending)
        assert {**pending[0], "idle_s": 0} == {**printed_pending, "idle_s": 0}

        dead_rows = http.get("/api/dead/flaky").json()
        assert dead_rows == cli("dead", "list", "flaky")
        assert sorted(d["job_id"] for d in dead_rows) == sorted(dead)
        assert all(d["deliveries"] == 2 and "FlakyError" in d["error"] for d in dead_rows)
        one = http.get(f"/api/dead/flaky/{dead[0]}").json()
        assert one == cli("dead", "show", "flaky", dead[0])

        live = http.get("/api/workers").json()
        printed_workers = cli("workers")
        assert list(live) == list(printed_workers) == ["workers", "pruned"]
        assert live["pruned"] == []
        stable = ("consumer", "host", "pid", "types", "concurrency")
        assert sorted([w[k] for k in stable] for w in live["workers"]) == sorted(
            [w[k] for k in stable] for w in printed_workers["workers"]
        )
        assert {w["consumer"] for w in live["workers"]} == {sleeper_name, failer_name}
        assert all(list(w) == list(printed_workers["workers"][0]) for w in live["workers"])

        assert {"sleepy", "flaky"} <= set(http.get("/api/history").json()["types"])
        bad = http.get("/api/pending/bad{type")
        assert bad.status_code == 400
        assert "invalid job type name" in bad.json()["error"]
        assert http.get("/api/dead/flaky/no-such-job").status_code == 404

        # The pages show the same jobs.
        assert 'data-type="sleepy"' in http.get("/").text
        in_flight = http.get("/pending/sleepy").text
        assert long_id in in_flight
        assert sleeper_name in in_flight
        page = http.get("/dead/flaky").text
        assert all(job_id in page for job_id in dead)
        assert "FlakyError: flaky is told to fail" in page
        who = http.get("/workers").text
        assert sleeper_name in who
        assert failer_name in who
    assert set(waiting).isdisjoint(workers.counts("started"))
    assert set(quick) <= set(workers.counts("done"))


def test_actions_need_csrf_and_purge_needs_confirmation(
    workers: Workers, queue: SyncQueue, start_web: Callable[..., Web], prefix: str
) -> None:
    """POSTs without the session's CSRF token, or from another origin, change nothing; retry
    one and retry all with it re-drive the jobs, which then succeed; a purge deletes only once
    confirmed."""
    workers.redis.set(f"{prefix}:flaky:fail", 1)
    workers.start("--max-deliveries", "1", *FAST, types=("flaky",))
    ids = queue.enqueue_many([Job(type="flaky", args={}) for _ in range(3)])  # dead at once
    wait_until(lambda: stats_of(queue, "flaky").dead == 3, 30, "3 flaky jobs dead")
    web = start_web()
    with web.client() as http:
        assert http.post("/dead/flaky/retry-all").status_code == 403
        page = http.get("/dead/flaky")
        token = csrf_of(page.text)
        assert http.post("/dead/flaky/retry-all", data={"csrf": "0" * 64}).status_code == 403
        evil = http.post(
            "/dead/flaky/retry-all", data={"csrf": token}, headers={"Origin": "http://evil.test"}
        )
        assert evil.status_code == 403
        assert http.get("/dead/flaky/retry-all").status_code == 405
        assert stats_of(queue, "flaky").dead == 3

        workers.redis.delete(f"{prefix}:flaky:fail")
        done = http.post("/dead/flaky/retry", data={"csrf": token, "job_id": ids[0]})
        assert done.status_code == 303
        assert done.headers["location"] == "/dead/flaky?retried=1"
        assert "Retried 1 job(s)." in http.get(done.headers["location"]).text
        wait_until(
            lambda: workers.redis.hget(f"{prefix}:flaky:done", ids[0]), 20, "the retried job ran"
        )
        assert stats_of(queue, "flaky").dead == 2
        again = http.post("/dead/flaky/retry-all", data={"csrf": token})
        assert again.headers["location"] == "/dead/flaky?retried=2"
        done_key = f"{prefix}:flaky:done"
        wait_until(lambda: workers.redis.hlen(done_key) == 3, 20, "the other two ran")
        assert stats_of(queue, "flaky").dead == 0

        workers.redis.set(f"{prefix}:flaky:fail", 1)
        queue.enqueue_many([Job(type="flaky", args={}) for _ in range(2)])
        wait_until(lambda: stats_of(queue, "flaky").dead == 2, 30, "2 more flaky jobs dead")
        assert http.post("/dead/flaky/purge", data={"csrf": token}).status_code == 400
        assert stats_of(queue, "flaky").dead == 2
        assert "Delete 2 dead job(s)" in http.get("/dead/flaky/purge").text
        purged = http.post("/dead/flaky/purge", data={"csrf": token, "confirm": "yes"})
        assert purged.headers["location"] == "/dead/flaky?purged=2"
    assert stats_of(queue, "flaky").dead == 0


def test_pause_and_resume_from_the_pages_with_csrf(
    workers: Workers, queue: SyncQueue, start_web: Callable[..., Web], redis_url: str, prefix: str
) -> None:
    """A type's page pauses it (after a page that takes a reason) and resumes it, with the
    session's CSRF token only; /api/stats and the overview show the pause, as the CLI does, and
    the type's worker leaves the jobs enqueued meanwhile waiting until the resume."""
    workers.start("-c", "2", *FAST, types=("sleepy",))
    web = start_web()
    with web.client() as http:
        assert 'id="pause"' in http.get("/pending/sleepy").text
        confirm = http.get("/pause/sleepy").text
        assert "Pause sleepy?" in confirm
        token = csrf_of(confirm)
        assert http.post("/pause/sleepy", data={"reason": "x"}).status_code == 403
        evil = http.post(
            "/pause/sleepy", data={"csrf": token}, headers={"Origin": "http://evil.test"}
        )
        assert evil.status_code == 403
        assert stats_of(queue, "sleepy").paused is False

        done = http.post("/pause/sleepy", data={"csrf": token, "reason": "deploy <b>v2</b>"})
        assert (done.status_code, done.headers["location"]) == (303, "/pending/sleepy?paused=1")
        page = http.get(done.headers["location"]).text
        assert "Paused sleepy." in page
        assert 'id="resume"' in page
        assert "deploy &lt;b&gt;v2&lt;/b&gt;" in page  # the reason is text
        (row_,) = http.get("/api/stats", params={"type": "sleepy"}).json()
        assert (row_["paused"], row_["pause_reason"]) == (True, "deploy <b>v2</b>")
        (printed,) = cli_json(redis_url, prefix, "stats", "sleepy")
        assert {**row_, "consumers": {}} == {**printed, "consumers": {}}
        # The overview lists the types found at most 2 s ago.
        wait_until(lambda: 'class="badge paused"' in http.get("/").text, 10, "the badge")
        assert "is paused" in http.get("/pause/sleepy").text  # no second pause form

        wait_until(lambda: queue.workers() and queue.workers()[0]["paused"], 20, "seen paused")
        time.sleep(1.2)  # a read that was waiting when the pause was seen ends within 1 s
        ids = queue.enqueue_many([Job(type="sleepy", args={}) for _ in range(2)])
        assert http.post("/resume/sleepy", data={"csrf": "0" * 64}).status_code == 403
        assert stats_of(queue, "sleepy").waiting == 2
        assert set(ids).isdisjoint(workers.counts("started"))

        done = http.post("/resume/sleepy", data={"csrf": token})
        assert done.headers["location"] == "/pending/sleepy?resumed=1"
        assert "Resumed sleepy." in http.get(done.headers["location"]).text
        wait_until(lambda: set(ids) <= set(workers.counts("done")), 20, "the jobs ran")
        assert stats_of(queue, "sleepy").paused is False
        long = http.post("/pause/sleepy", data={"csrf": token, "reason": "x" * 201})
        assert long.status_code == 400
        assert "at most 200 characters" in long.text
    assert stats_of(queue, "sleepy").paused is False


def test_token_is_required_on_every_request(start_web: Callable[..., Web]) -> None:
    """With a token, a request without it is refused (401); the header or the cookie a first
    ?token= visit sets let it in, and the cookie is not the token itself."""
    web = start_web(token=TOKEN)
    assert TOKEN not in web.log.read_text()  # a token you gave is never printed
    with web.client() as http:
        refused = http.get("/api/stats")
        assert refused.status_code == 401
        assert "token" in refused.json()["error"]
        assert http.get("/").status_code == 401
        assert http.get("/api/job/noop/some-id").status_code == 401
        assert http.get("/job", params={"type": "noop", "id": "x"}).status_code == 401
        assert http.get("/", params={"token": "x" * 24}).status_code == 401
        assert http.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).is_success
        first = http.get("/workers", params={"token": TOKEN})
        assert first.status_code == 303
        assert first.headers["location"] == "/workers"
        assert TOKEN not in first.headers["set-cookie"]
        assert cookie_attrs(first.headers["set-cookie"])["max-age"] == "43200"
        assert http.get("/workers").is_success  # the cookie now carries it
        assert http.get("/api/stats").is_success


def cookie_attrs(set_cookie: str) -> dict[str, str]:
    """A Set-Cookie header's attributes, lower-cased names (flags map to ``""``)."""
    _, *attrs = (part.strip() for part in set_cookie.split(";"))
    return {a.partition("=")[0].lower(): a.partition("=")[2] for a in attrs}


def test_a_token_is_made_when_none_is_given(start_web: Callable[..., Web]) -> None:
    """On loopback without --token, a token is made for the run and a login URL printed:
    without it the API and the actions answer 401; the login URL sets an expiring HttpOnly,
    SameSite=Strict cookie (not Secure over plain HTTP) that then lets the browser in."""
    web = start_web()
    assert web.token is not None
    assert len(web.token) >= 16
    assert web.log.read_text().count(web.token) == 1  # shown once, in the login URL
    with web.client(login=False) as http:
        for path in ("/", "/api/stats", "/api/workers", "/dead/flaky", "/api/history"):
            assert http.get(path).status_code == 401, path
        same_origin = {"Origin": web.base}
        for action in ("retry-all", "retry", "purge"):
            assert http.post(f"/dead/flaky/{action}", headers=same_origin).status_code == 401
        for path in ("/pause/flaky", "/resume/flaky"):
            assert http.post(path, headers=same_origin).status_code == 401, path
        login = http.get(web.login("/workers"))
        assert login.status_code == 303
        assert login.headers["location"] == "/workers"
        (auth,) = [c for c in login.headers.get_list("set-cookie") if c.startswith(AUTH_COOKIE)]
        assert web.token not in auth
        assert cookie_attrs(auth) == {
            "max-age": "43200",
            "path": "/",
            "httponly": "",
            "samesite": "Strict",
        }
        page = http.get("/workers")
        assert page.is_success
        (session,) = page.headers.get_list("set-cookie")
        assert session.startswith(SESSION_COOKIE)
        assert "secure" not in cookie_attrs(session)
        assert http.get("/api/stats").is_success


def test_login_cookie_expires_and_cannot_be_extended() -> None:
    """The login cookie lets a browser in for 12 hours by the server's clock, not only the
    browser's; a cookie whose expiry was moved, or made for another token, is refused."""
    now = [1_000_000.0]
    guard = Guard(token=TOKEN, clock=lambda: now[0])
    jar: SimpleCookie = SimpleCookie(guard.auth_cookie(tls=False).decode())
    value = jar[AUTH_COOKIE].value
    assert guard.token_ok({}, {AUTH_COOKIE: value})
    now[0] += 12 * 3600 - 1
    assert guard.token_ok({}, {AUTH_COOKIE: value})
    now[0] += 1
    assert not guard.token_ok({}, {AUTH_COOKIE: value})
    expires, _, mac = value.partition(".")
    assert not guard.token_ok({}, {AUTH_COOKIE: f"{int(expires) + 3600}.{mac}"})
    other = Guard(token="another-token-of-24-chars", clock=lambda: 1_000_000.0)
    assert not other.token_ok({}, {AUTH_COOKIE: value})
    for junk in ("", ".", "²³.x", f"{expires}.{mac}é", "x" * 5000):
        assert not guard.token_ok({}, {AUTH_COOKIE: junk})
    assert guard.token_ok({"authorization": f"Bearer {TOKEN}"}, {})  # scripts: no expiry


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_cookies_are_secure_under_tls(
    start_web: Callable[..., Web], certificate: tuple[Path, Path]
) -> None:
    """With --tls-cert/--tls-key the dashboard serves HTTPS, and its cookies (login and
    session) are Secure as well as HttpOnly and SameSite=Strict."""
    cert, key = certificate
    web = start_web("--tls-cert", str(cert), "--tls-key", str(key))
    assert web.base.startswith("https://127.0.0.1:")
    with web.client(login=False, verify=ssl.create_default_context(cafile=str(cert))) as http:
        assert http.get("/api/stats").status_code == 401
        login = http.get(web.login())
        assert login.status_code == 303
        for cookie in login.headers.get_list("set-cookie"):
            attrs = cookie_attrs(cookie)
            assert {"secure", "httponly"} <= set(attrs), cookie
            assert attrs["samesite"] == "Strict", cookie
        assert http.get("/api/stats").is_success


def test_no_token_only_by_explicit_choice(start_web: Callable[..., Web]) -> None:
    """--no-token serves without a token (and says so), on loopback only."""
    web = start_web("--no-token")
    assert web.token is None
    assert "no token: any local user or process can use it" in web.log.read_text()
    with web.client() as http:
        assert http.get("/api/stats").is_success
        assert http.get("/dead/flaky").is_success


def test_loopback_only_without_a_token(start_web: Callable[..., Web]) -> None:
    """Without a token the dashboard answers loopback names only (no DNS rebinding), and every
    response forbids framing and foreign scripts."""
    web = start_web("--no-token")
    port = web.base.rsplit(":", 1)[1]
    with web.client() as http:
        assert http.get("/api/stats", headers={"Host": "evil.test"}).status_code == 400
        ok = http.get("/", headers={"Host": f"localhost:{port}"})
        assert ok.is_success
        assert "script-src 'self'" in ok.headers["content-security-policy"]
        assert ok.headers["x-frame-options"] == "DENY"


def run_web(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``streamq web ARGS`` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "streamq", "web", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )


def test_refuses_to_start_with_one_line(redis_url: str) -> None:
    """--no-token beyond loopback or with a token, a short token, half of a TLS pair, a port in
    use: one line, non-zero exit."""
    runner = CliRunner(env={"STREAMQ_WEB_TOKEN": None})
    open_to_all = runner.invoke(app, ["web", "--host", "0.0.0.0", "--no-token", "--url", redis_url])
    assert open_to_all.exit_code == 2
    assert error_lines(open_to_all.stderr) == [
        "streamq: error: listening on 0.0.0.0 needs a token that every request must carry: "
        "drop --no-token (a token is then made for this run), or give --token"
    ]
    both = runner.invoke(app, ["web", "--no-token", "--token", TOKEN, "--url", redis_url])
    assert both.exit_code == 2
    assert "contradict" in error_lines(both.stderr)[0]
    half = runner.invoke(app, ["web", "--tls-cert", "cert.pem", "--url", redis_url])
    assert half.exit_code == 2
    assert error_lines(half.stderr) == ["streamq: error: --tls-cert and --tls-key go together"]
    short = runner.invoke(app, ["web", "--token", "short-secret", "--url", redis_url])
    assert short.exit_code == 2
    (line,) = error_lines(short.stderr)
    assert "at least 16 characters" in line
    assert "short-secret" not in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = run_web("--port", str(busy.getsockname()[1]), "--url", redis_url)
    assert taken.returncode == 1
    (line,) = error_lines(taken.stderr)
    assert line.startswith("streamq: error: cannot listen on 127.0.0.1:")


def test_missing_extra_names_it(redis_url: str) -> None:
    """Without starlette the command says in one line which extra to install (exit 1)."""
    code = (
        "import sys; sys.modules['starlette'] = None; "
        "sys.argv = ['streamq', 'web', '--url', sys.argv[1]]; "
        "from streamq._cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, redis_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        "streamq: error: streamq web needs the web extra (starlette is missing): "
        "pip install 'streamq[web]'"
    ]


def test_dashboard_imports_neither_typer_nor_the_cli() -> None:
    """Importing the dashboard (app and server) loads no CLI module and not typer."""
    code = (
        "import json, sys, streamq._web.app, streamq._web.serve; "
        "print(json.dumps(list(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = json.loads(done.stdout)
    assert "streamq._web.app" in loaded
    assert "typer" not in loaded
    assert [name for name in loaded if name.split(".")[:2] == ["streamq", "_cli"]] == []


def test_history_rates_per_second() -> None:
    """The charts' rates are counter differences over time; a counter reset is no negative rate."""
    h = History(window_s=60, interval_s=1)
    base = {"type": "t", "failed": 0, "waiting": 5, "in_flight": 1}
    h.add(100.0, [{**base, "processed": 10}])
    h.add(102.0, [{**base, "processed": 30, "failed": 4}])
    h.add(103.0, [{**base, "processed": 0}])
    series = h.series()["types"]["t"]
    assert series["processed_per_s"] == [10.0, 0.0]
    assert series["failed_per_s"] == [2.0, 0.0]
    assert series["waiting"] == [5, 5]
    h.add(200.0, [{**base, "type": "u", "processed": 0}])
    assert list(h.series()["types"]) == ["u"]


@pytest.mark.parametrize("path", ["/pending/a%20b", "/dead/a%7Bb"])
def test_bad_type_names_are_a_400_page(start_web: Callable[..., Web], path: str) -> None:
    """A type name that cannot be a stream's gets an error page, not a traceback."""
    web = start_web()
    with web.client() as http:
        page = http.get(path)
    assert page.status_code == 400
    assert "invalid job type name" in page.text


def test_api_job_is_the_cli_s_document(
    workers: Workers,
    queue: SyncQueue,
    start_web: Callable[..., Web],
    redis_url: str,
    prefix: str,
) -> None:
    """``/api/job/{type}/{id}`` answers with ``streamq job --json``'s document for a running,
    a scheduled and an unknown job (200 for unknown too), an id with a ``/`` in it too; the
    search page shows the state; a bad type or an over-long id is a 400."""
    sleeper = workers.start("-c", "1", *FAST, types=("sleepy",))
    running = queue.enqueue(Job(type="sleepy", args={"sleep": 60}))
    wait_until(lambda: running in workers.counts("started"), 20, "the long job started")
    later = queue.enqueue(Job(type="sleepy", args={"sleep": 0}), delay=600)
    queue.enqueue(Job(type="sleepy", args={"sleep": 0}, id="tenant/42"), delay=600)
    web = start_web()
    with web.client() as http:
        for job_id, state in ((running, "running"), (later, "scheduled"), ("nope", "unknown")):
            served = http.get(f"/api/job/sleepy/{job_id}")
            assert served.status_code == 200
            got, printed = served.json(), cli_json(redis_url, prefix, "job", "sleepy", job_id)
            assert got["state"] == state
            assert list(got) == list(printed)
            # Only the clocks moved between the two reads.
            volatile = {"idle_s": 0, "due_in_s": 0}
            assert {**got, **volatile} == {**printed, **volatile}
        assert http.get(f"/api/job/sleepy/{running}").json()["consumer"] == consumer_of(
            workers, sleeper
        )
        page = http.get("/job", params={"type": "sleepy", "id": running}).text
        assert 'data-state="running"' in page
        assert running in page
        assert 'id="find-job"' in http.get("/job").text
        assert 'action="/job"' in http.get("/").text  # the search box on every page
        assert http.get("/api/job/sleepy/tenant/42").json()["state"] == "scheduled"
        assert http.get("/api/job/sleepy/tenant%2F42").json()["job_id"] == "tenant/42"
        assert http.get("/api/job/bad{type/x").status_code == 400
        assert http.get(f"/api/job/sleepy/{'x' * 201}").status_code == 400
        assert http.get("/job", params={"type": "a b", "id": "x"}).status_code == 400


def test_api_stats_and_the_overview_show_the_waiting_jobs_per_priority(
    queue: SyncQueue, start_web: Callable[..., Web], redis_url: str, prefix: str
) -> None:
    """Jobs waiting at two levels: /api/stats has ``waiting_by_priority`` as ``stats --json``
    prints it, and the overview's waiting cell shows the levels (``3 (h1 d0 l2)``)."""
    queue.enqueue_many([Job(type="sleepy", args={}) for _ in range(2)], priority="low")
    queue.enqueue(Job(type="sleepy", args={}), priority="high")
    web = start_web()
    with web.client() as http:
        (row_,) = http.get("/api/stats", params={"type": "sleepy"}).json()
        assert row_["waiting_by_priority"] == {"high": 1, "default": 0, "low": 2}
        (printed,) = cli_json(redis_url, prefix, "stats", "sleepy")
        assert printed["waiting_by_priority"] == row_["waiting_by_priority"]
        wait_until(lambda: "3 (h1 d0 l2)" in http.get("/").text, 10, "the levels on the page")


def test_api_keys_serves_what_stats_keys_prints(
    queue: SyncQueue, start_web: Callable[..., Web], redis_url: str, prefix: str
) -> None:
    """Account 7 with 1 job holding its slot and 2 held, account 8 with 1 running:
    ``/api/keys/limited`` is the ``stats --keys limited --json`` document, ``?limit=1`` the
    busiest only."""
    import asyncio

    from streamq.backends._flow_base import Admission, FlowRule
    from streamq.backends.redis import RedisBackend

    queue.enqueue_many([Job(type="limited", account_id=a, args={}) for a in (7, 7, 7, 8)])

    async def hold() -> None:
        backend = RedisBackend(redis_url, prefix=prefix)
        try:
            await backend.ensure_groups(["limited"])
            got = await backend.read(["limited"], "holder", 4, 100)
            keys = ["7", "7", "7", "8"]
            asks = [Admission(d.entry_id, k, None, 0) for d, k in zip(got, keys, strict=True)]
            verdicts = await backend.admit("limited", asks, FlowRule(1, 60_000))
            assert verdicts == ["run", "wait", "wait", "run"]
        finally:
            await backend.aclose()

    asyncio.run(hold())
    web = start_web()
    with web.client() as http:
        keys = http.get("/api/keys/limited").json()
        assert keys == cli_json(redis_url, prefix, "stats", "--keys", "limited")
        assert keys == [
            {"key": "7", "running": 1, "held": 2},
            {"key": "8", "running": 1, "held": 0},
        ]
        assert http.get("/api/keys/limited", params={"limit": 1}).json() == keys[:1]
        assert http.get("/api/keys/bad{type").status_code == 400
