"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

Never ``playwright install``: the tests use the system's /usr/bin/chromium (``.ci/run``
installs it) and skip, saying so, where it is missing. Each test runs a ``streamq web``
process and ``streamq consume`` workers on the session's server, and logs in through the login
URL that ``streamq web`` printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import Web, consumer_of
from worker_procs import Workers, wait_until

from streamq import Job, Principal, SyncQueue

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = ("--claim-after", "2s", "--heartbeat", "300ms", "--retry-base", "50ms")
#: where test_overview_under_load also copies its screenshot (docs/img/dashboard.png comes so)
SCREENSHOT_ENV = "STREAMQ_DASHBOARD_SCREENSHOT"

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/run installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, start_web: Callable[..., Web]) -> Iterator[Any]:
    """A fresh browser context and page (closed before the dashboards stop); script errors on
    any page fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield p
    context.close()
    # A refused POST is logged by Chromium as a failed resource: that one is expected.
    assert [e for e in errors if "403" not in e] == []


def cell(page: Any, type: str, field: str) -> Any:
    """One cell of the overview table."""
    return page.locator(f'#overview tr[data-type="{type}"] td[data-field="{field}"]')


def dead_count(queue: SyncQueue, type: str) -> int:
    """Jobs in the dead stream of ``type`` now."""
    (s,) = queue.stats([type])
    return int(s.dead)


def test_overview_under_load(
    page: Any,
    workers: Workers,
    queue: SyncQueue,
    start_web: Callable[..., Web],
    prefix: str,
    tmp_path: Path,
) -> None:
    """While workers process waves of jobs, the overview updates itself (no reload) to the
    numbers of the jobs this test enqueued, and draws the charts; a screenshot is saved."""
    web = start_web("--refresh", "500ms", "--history", "30s")
    page.goto(web.login("/"))  # the login URL it printed, as a person opens it
    assert page.url == web.base + "/"  # the token is dropped from the address
    expect(page.locator("#overview")).to_be_visible()
    page.evaluate("window.__stayed = true")
    workers.redis.set(f"{prefix}:flaky:fail", 1)
    workers.start("-c", "6", *FAST, types=("sleepy",))
    workers.start("--max-deliveries", "1", *FAST, types=("flaky",))
    queue.enqueue_many([Job(type="report", args={}) for _ in range(7)])  # nobody consumes it
    for wave in range(4):
        queue.enqueue_many([Job(type="sleepy", args={"sleep": 0.04}) for _ in range(150)])
        queue.enqueue_many([Job(type="flaky", args={}) for _ in range(3 + wave)])
        running = 100 * (wave + 1)
        wait_until(lambda n=running: len(workers.counts("done")) >= n, 30, "a wave running")
        if wave == 3:
            page.wait_for_timeout(600)  # one more sample on the charts
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if target := os.environ.get(SCREENSHOT_ENV):
                shutil.copyfile(shot, target)

    expect(cell(page, "sleepy", "processed")).to_have_text("600", timeout=30_000)
    expect(cell(page, "sleepy", "waiting")).to_have_text("0")
    expect(cell(page, "sleepy", "in_flight")).to_have_text("0")
    expect(cell(page, "flaky", "dead")).to_have_text("18")
    expect(cell(page, "flaky", "failed")).to_have_text("18")
    expect(cell(page, "flaky", "processed")).to_have_text("0")
    expect(cell(page, "report", "waiting")).to_have_text("7")
    expect(cell(page, "report", "consumers")).to_have_text("0")
    expect(cell(page, "sleepy", "consumers")).to_have_text("1")
    assert page.evaluate("window.__stayed") is True, "the page reloaded"
    sleepy_chart = page.locator('#charts .card[data-type="sleepy"]')
    expect(sleepy_chart.locator("polyline.ok")).to_have_count(1)
    expect(sleepy_chart.locator("polyline.busy")).to_have_count(1)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_long_job_in_flight_with_its_consumer(
    page: Any, workers: Workers, queue: SyncQueue, start_web: Callable[..., Web]
) -> None:
    """A running job shows in flight with its worker's consumer; once that worker is killed
    the job is marked as idle longer than claim_after."""
    web = start_web("--claim-after", "1s")
    worker = workers.start("-c", "2", "--heartbeat", "200ms", types=("sleepy",))
    name = consumer_of(workers, worker)
    job_id = queue.enqueue(Job(type="sleepy", args={"sleep": 60}))
    wait_until(lambda: job_id in workers.counts("started"), 20, "the long job started")

    page.goto(web.login("/"))
    expect(cell(page, "sleepy", "in_flight")).to_have_text("1")
    cell(page, "sleepy", "in_flight").locator("a").click()
    row = page.locator(f'#pending tr[data-job-id="{job_id}"]')
    expect(row.locator('td[data-field="consumer"]')).to_have_text(name)
    expect(row.locator('td[data-field="deliveries"]')).to_have_text("1")
    page.wait_for_timeout(1200)  # past claim_after: the worker's heartbeat keeps it fresh
    page.reload()
    expect(row).not_to_have_class("stuck")

    page.goto(web.base + "/workers")
    expect(
        page.locator(f'#workers tr[data-consumer="{name}"] td[data-field="in_flight"]')
    ).to_have_text("1")

    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    # Its heartbeat record expires after three periods: a consumer without a live worker.
    expect(page.locator(f'#orphans tr[data-consumer="{name}"]')).to_be_visible(timeout=15_000)
    expect(page.locator(f'#workers tr[data-consumer="{name}"]')).to_have_count(0)
    page.goto(web.base + "/pending/sleepy")  # then the page refreshes itself every 2 s
    expect(row).to_have_class("stuck", timeout=15_000)
    expect(row.locator(".badge")).to_have_text("idle > claim_after")


def test_dead_job_retried_from_the_page_succeeds(
    page: Any, workers: Workers, queue: SyncQueue, start_web: Callable[..., Web], prefix: str
) -> None:
    """A dead job's Retry button puts it back; a worker then runs it to success."""
    workers.redis.set(f"{prefix}:flaky:fail", 1)
    workers.start("--max-deliveries", "1", *FAST, types=("flaky",))
    job_id = queue.enqueue(Job(type="flaky", args={}))
    wait_until(lambda: dead_count(queue, "flaky") == 1, 20, "the job dead")
    workers.redis.delete(f"{prefix}:flaky:fail")  # the "fix" is deployed

    web = start_web()
    page.goto(web.login("/"))
    cell(page, "flaky", "dead").locator("a").click()
    row = page.locator(f'#dead tr[data-job-id="{job_id}"]')
    expect(row.locator('td[data-field="error"]')).to_have_text("FlakyError: flaky is told to fail")
    expect(row.locator('td[data-field="enqueued"]')).to_have_text(re.compile(r"^\d{4}-.* UTC$"))
    row.locator("button.retry").click()
    expect(page.locator("#flash")).to_have_text("Retried 1 job(s).")
    expect(page.locator("#dead tr.empty")).to_be_visible()
    wait_until(lambda: workers.redis.hget(f"{prefix}:flaky:done", job_id), 20, "the job ran")
    page.goto(web.base + "/")
    expect(cell(page, "flaky", "processed")).to_have_text("1")
    expect(cell(page, "flaky", "dead")).to_have_text("0")


def test_xss_payload_renders_as_text(
    page: Any, workers: Workers, queue: SyncQueue, start_web: Callable[..., Web]
) -> None:
    """Args, identity and a type name holding HTML show as text, on the server-rendered
    pages and in the live table alike; nothing of it runs; the identity's user is masked."""
    payload = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
    evil_type = "<script>window.__pwned=3"
    job_id = queue.enqueue(
        Job(
            type="sleepy",
            args={"sleep": payload},  # not a number: poison, dead at once
            identity=Principal(org_id=payload, user="<script>alice"),
        )
    )
    queue.enqueue(Job(type=evil_type, args={"x": payload}))
    workers.start(*FAST, types=("sleepy",))
    wait_until(lambda: dead_count(queue, "sleepy") == 1, 20, "the poison job dead")

    web = start_web("--refresh", "300ms")
    page.goto(web.login("/"))
    evil_cell = cell(page, evil_type, "type")
    expect(evil_cell).to_have_text(evil_type)
    page.wait_for_timeout(700)  # the live table has been redrawn by the script since
    expect(evil_cell).to_have_text(evil_type)

    page.goto(web.base + "/dead/sleepy")
    row = page.locator(f'#dead tr[data-job-id="{job_id}"]')
    expect(row.locator('td[data-field="args"] pre')).to_contain_text(payload)
    identity = row.locator('td[data-field="identity"]')
    expect(identity).to_contain_text(f"org: {payload}")
    expect(identity).to_contain_text("user: <s***")
    expect(identity).not_to_contain_text("alice")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 1  # dashboard.js only
    assert page.locator("img").count() == 0


def test_post_without_csrf_token_is_refused(
    page: Any, workers: Workers, queue: SyncQueue, start_web: Callable[..., Web]
) -> None:
    """Retry-all sent without the page's CSRF token, as a form or a script, is refused (403)
    and the dead job stays dead."""
    queue.enqueue(Job(type="sleepy", args={"sleep": "not a number"}))
    workers.start(*FAST, types=("sleepy",))
    wait_until(lambda: dead_count(queue, "sleepy") == 1, 20, "the poison job dead")
    web = start_web()
    page.goto(web.login("/dead/sleepy"))

    status = page.evaluate(
        """async () => (await fetch('/dead/sleepy/retry-all', {
            method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'},
            body: 'csrf=forged',
        })).status"""
    )
    assert status == 403
    page.evaluate("document.querySelector('#retry-all').form.querySelector('[name=csrf]').remove()")
    page.locator("#retry-all").click()
    expect(page.locator("body")).to_contain_text("missing or wrong CSRF token")
    assert dead_count(queue, "sleepy") == 1


def test_the_search_box_finds_a_job(
    page: Any, workers: Workers, queue: SyncQueue, start_web: Callable[..., Web]
) -> None:
    """The search box in the navigation takes a type and a job id to the job's page: a
    running job with its consumer, then an unknown id; args holding HTML show as text and
    the identity's user masked."""
    payload = "<img src=x onerror=window.__pwned=1>"
    worker = workers.start("-c", "1", *FAST, types=("sleepy",))
    name = consumer_of(workers, worker)
    who = Principal(org_id="org-1", user="alice.secret")
    job_id = queue.enqueue(Job(type="sleepy", args={"sleep": 60}, identity=who))
    wait_until(lambda: job_id in workers.counts("started"), 20, "the long job started")
    later = queue.enqueue(Job(type="sleepy", args={"sleep": 1, "note": payload}), delay=600)

    web = start_web()
    page.goto(web.login("/"))
    find = page.locator("nav form.find")
    find.locator('input[name="type"]').fill("sleepy")
    find.locator('input[name="id"]').fill(job_id)
    find.locator("button").click()
    expect(page.locator("#job-state")).to_have_text("running")
    expect(page.locator('#job tr[data-field="consumer"] td')).to_have_text(name)
    expect(page.locator('#job tr[data-field="deliveries"] td')).to_have_text("1")
    expect(page.locator('#job tr[data-field="user"] td')).to_have_text("al***")
    expect(page.locator("body")).not_to_contain_text("alice.secret")

    form = page.locator("#find-job")  # the page's own form, filled with the last search
    expect(form.locator('input[name="type"]')).to_have_value("sleepy")
    form.locator('input[name="id"]').fill("no-such-job")
    form.locator("button").click()
    expect(page.locator("#job-state")).to_have_text("unknown")

    form.locator('input[name="id"]').fill(later)
    form.locator("button").click()
    expect(page.locator("#job-state")).to_have_text("scheduled")
    expect(page.locator('#job tr[data-field="args"] td')).to_contain_text(payload)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
