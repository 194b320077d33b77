"""The dashboard's HTML, built from the same ``--json`` objects the API serves.

Every value that comes from a job or the server (type names, ids, args, errors, consumer and
host names) goes through :func:`esc` (``html.escape``): a job whose args hold ``<script>`` shows
that text. The only script is static/dashboard.js, which writes values with ``textContent``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from streamq._views import age, concurrency_text
from streamq._views_job import job_state_rows


def esc(value: object) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return escape(str(value), quote=True)


def path_segment(value: str) -> str:
    """``value`` as one URL path segment (escaped for an attribute afterwards by the caller)."""
    return quote(value, safe="")


def when(ts: float | None) -> str:
    """A Unix time as ``2026-11-23 01:02:03 UTC``; ``-`` for none."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def layout(title: str, body: str, *, refresh_s: float | None = None) -> str:
    """A whole page around ``body`` (already HTML); ``refresh_s`` reloads it that often."""
    meta = f'<meta http-equiv="refresh" content="{refresh_s:g}">' if refresh_s else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{meta}<link rel="icon" href="data:,"><title>{esc(title)} · streamq</title>'
        '<link rel="stylesheet" href="/static/dashboard.css"></head><body>'
        '<nav><a class="brand" href="/">streamq</a> <a href="/">Overview</a> '
        '<a href="/workers">Workers</a>'
        '<form class="find" action="/job" method="get" role="search">'
        '<input name="type" placeholder="type" aria-label="job type" size="10" required>'
        '<input name="id" placeholder="job id" aria-label="job id" size="38" required>'
        '<button type="submit">Find</button></form></nav>'
        f"<main>{body}</main>"
        '<script src="/static/dashboard.js"></script></body></html>\n'
    )


def _table(headers: Sequence[str], rows: Sequence[str], *, id: str, empty: str) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(rows) or f'<tr class="empty"><td colspan="{len(headers)}">{esc(empty)}</td></tr>'
    return f'<table id="{id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


OVERVIEW_FIELDS = [
    ("waiting", "waiting"),
    ("scheduled", "scheduled"),
    ("held", "held"),
    ("in_flight", "in flight"),
    ("oldest_in_flight_s", "oldest in flight"),
    ("dead", "dead"),
    ("processed", "processed"),
    ("failed", "failed"),
    ("retried", "retried"),
    ("cancelled", "cancelled"),
    ("consumers", "consumers"),
]


def overview_cell(row: Mapping[str, Any], field: str) -> str:
    """The text of one overview cell (dashboard.js formats the same way)."""
    if field == "oldest_in_flight_s":
        return age(row[field])
    if field == "consumers":
        return str(len(row[field]))
    if field == "waiting" and row.get("waiting_by_priority"):
        # A type given a priority: the waiting jobs per level too (high, default, low).
        levels = row["waiting_by_priority"]
        return f"{row[field]} (" + " ".join(f"{k[0]}{n}" for k, n in levels.items()) + ")"
    return str(row[field])


def paused_badge(row: Mapping[str, Any]) -> str:
    """The badge beside a paused type's name (dashboard.js writes the same), else nothing."""
    if not row["paused"]:
        return ""
    title = "paused" + (f": {row['pause_reason']}" if row["pause_reason"] else "")
    return f' <span class="badge paused" title="{esc(title)}">paused</span>'


def overview(stats: Sequence[Mapping[str, Any]], *, refresh_s: float) -> str:
    """One row per type (from ``stats --json``) and the live charts' places."""
    rows = []
    for s in stats:
        link = f"/pending/{path_segment(s['type'])}"
        name = f'<a href="{esc(link)}">{esc(s["type"])}</a>{paused_badge(s)}'
        cells = [f'<td data-field="type">{name}</td>']
        for field, _label in OVERVIEW_FIELDS:
            text = esc(overview_cell(s, field))
            if field in ("in_flight", "dead"):
                target = (
                    f"/{'pending' if field == 'in_flight' else 'dead'}/{path_segment(s['type'])}"
                )
                text = f'<a href="{esc(target)}">{text}</a>'
            cells.append(f'<td data-field="{field}">{text}</td>')
        rows.append(f'<tr data-type="{esc(s["type"])}">{"".join(cells)}</tr>')
    headers = ["type", *(label for _f, label in OVERVIEW_FIELDS)]
    body = (
        f'<h1>Overview</h1><p id="status" class="status" data-refresh="{refresh_s:g}">'
        f"updated {esc(time.strftime('%H:%M:%S'))}; live every {refresh_s:g}s</p>"
        + _table(headers, rows, id="overview", empty="no job types on this server yet")
        + '<p class="hint">in flight: the consumer group\'s pending-entries list, across all '
        "workers. Click a number for the jobs behind it, a type to pause or resume it.</p>"
        '<section id="charts"></section>'
    )
    return layout("Overview", body)


def pause_control(type: str, stats: Mapping[str, Any], *, csrf: str) -> str:
    """Whether ``type`` is paused, and the form that pauses (with a reason) or resumes it."""
    hidden = f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
    if stats["paused"]:
        reason = f": {esc(stats['pause_reason'])}" if stats["pause_reason"] else ""
        return (
            f'<div class="actions" id="pause-state"><span class="badge paused">paused</span> '
            f"since {esc(when(stats['paused_since']))}{reason}. Its workers take none of its "
            f"jobs; the ones they were running finish."
            f'<form method="post" action="/resume/{esc(path_segment(type))}">{hidden}'
            f'<button type="submit" id="resume">Resume {esc(type)}</button></form></div>'
        )
    # A link to a page of its own (no reload there wipes a reason being typed).
    return (
        f'<div class="actions" id="pause-state"><a class="button" id="pause" '
        f'href="/pause/{esc(path_segment(type))}">Pause {esc(type)}…</a></div>'
    )


def pause_confirm(type: str, stats: Mapping[str, Any], *, csrf: str) -> str:
    """The page that pauses ``type``: what a pause does, a reason, the button."""
    if stats["paused"]:
        body = f"<h1>{esc(type)} is paused</h1>" + pause_control(type, stats, csrf=csrf)
        return layout(f"Pause {type}", body)
    body = (
        f"<h1>Pause {esc(type)}?</h1>"
        f"<p>Its workers stop taking its jobs within about a second; the {stats['in_flight']} "
        "in flight finish. Jobs enqueued meanwhile wait (now "
        f"{stats['waiting']} waiting) until it is resumed, and none of its periodic jobs fire.</p>"
        f'<form method="post" action="/pause/{esc(path_segment(type))}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<p><input type="text" name="reason" id="reason" maxlength="200" size="60" '
        'placeholder="reason (optional, shown in stats)" aria-label="reason"></p>'
        f'<button type="submit" id="confirm-pause">Pause {esc(type)}</button> '
        f'<a href="/pending/{esc(path_segment(type))}">Cancel</a></form>'
    )
    return layout(f"Pause {type}?", body)


def pending(
    type: str,
    rows: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any],
    *,
    claim_after_s: float,
    refresh_s: float,
    csrf: str = "",
    flash: str = "",
) -> str:
    """The PEL of ``type`` (``pending --json`` objects, longest idle first), and the type's
    pause or resume form (shown with ``csrf``)."""
    body_rows = []
    for r in rows:
        stuck = r["idle_s"] > claim_after_s
        mark = ' <span class="badge">idle &gt; claim_after</span>' if stuck else ""
        body_rows.append(
            f'<tr data-job-id="{esc(r["job_id"] or "")}"{" class=stuck" if stuck else ""}>'
            f'<td class="id">{esc(r["job_id"] or "?")}</td>'
            f'<td data-field="consumer">{esc(r["consumer"])}</td>'
            f'<td data-field="idle">{esc(age(r["idle_s"]))}{mark}</td>'
            f'<td data-field="deliveries">{esc(r["deliveries"])}</td></tr>'
        )
    per = ", ".join(
        f"{esc(name)}: {c['in_flight']}" for name, c in stats["consumers"].items() if c["in_flight"]
    )
    shown = f" (the {len(rows)} idle longest)" if len(rows) < stats["in_flight"] else ""
    body = (
        f"<h1>In flight: {esc(type)}</h1>"
        + (f'<p class="flash" id="flash">{esc(flash)}</p>' if flash else "")
        + (pause_control(type, stats, csrf=csrf) if csrf else "")
        + f'<p class="status">{stats["in_flight"]} in flight{shown}{"; " + per if per else ""}. '
        f"Jobs idle longer than claim_after ({esc(age(claim_after_s))}) are marked: their worker "
        "stopped refreshing them, and a live worker will take them over. "
        f'<a href="/dead/{esc(path_segment(type))}">dead letters of {esc(type)}</a></p>'
        + _table(
            ["job id", "consumer", "idle", "deliveries"], body_rows, id="pending", empty="none"
        )
    )
    return layout(f"In flight: {type}", body, refresh_s=refresh_s)


def _args_text(job: Mapping[str, Any]) -> str:
    if "undecodable" in job:
        return f"undecodable: {job['undecodable']}"
    return json.dumps(job["args"], indent=2, ensure_ascii=False, sort_keys=True)


def _identity(job: Mapping[str, Any]) -> str:
    if "undecodable" in job:
        return "-"
    parts = [
        ("account", job["account_id"]),
        ("org", job["org_id"]),
        ("account number", job["account_number"]),
        ("user", job["user"]),
        ("request", job["request_id"]),
    ]
    return "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in parts if v not in ("", None))


def dead(
    type: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    enqueued_at: Mapping[str, float | None],
    csrf: str,
    flash: str = "",
) -> str:
    """Dead letters of ``type`` (``dead show --json`` objects) with retry and purge forms."""
    hidden = f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
    base = f"/dead/{path_segment(type)}"
    body_rows = []
    for d in rows:
        retry = (
            f'<form method="post" action="{esc(base)}/retry">{hidden}'
            f'<input type="hidden" name="job_id" value="{esc(d["job_id"])}">'
            '<button type="submit" class="retry">Retry</button></form>'
            if d["job_id"]
            else ""
        )
        body_rows.append(
            f'<tr data-job-id="{esc(d["job_id"] or "")}">'
            f'<td class="id">{esc(d["job_id"] or "?")}</td>'
            f'<td data-field="reason">{esc(d["reason"])}</td>'
            f'<td data-field="error">{esc(d["error"] or "-")}</td>'
            f'<td data-field="deliveries">{esc(d["deliveries"])}</td>'
            f'<td data-field="enqueued">{esc(when(enqueued_at.get(d["dead_id"])))}</td>'
            f'<td data-field="dead_at">{esc(when(d["dead_at"]))}</td>'
            f'<td data-field="identity">{_identity(d["job"])}</td>'
            f'<td data-field="args"><pre>{esc(_args_text(d["job"]))}</pre></td>'
            f"<td>{retry}</td></tr>"
        )
    actions = (
        f'<div class="actions"><form method="post" action="{esc(base)}/retry-all">{hidden}'
        f'<button type="submit" id="retry-all">Retry all</button></form> '
        f'<a class="button danger" id="purge" href="{esc(base)}/purge">Purge…</a></div>'
        if rows
        else ""
    )
    headers = ["job id", "reason", "last error", "deliveries", "enqueued", "dead at"]
    headers += ["identity", "args", ""]
    body = (
        f"<h1>Dead letters: {esc(type)}</h1>"
        + (f'<p class="flash" id="flash">{esc(flash)}</p>' if flash else "")
        + f'<p class="status">{len(rows)} shown, oldest first. Retry puts a job back on the '
        "queue with its id and a fresh delivery count. "
        f'<a href="/pending/{esc(path_segment(type))}">in flight of {esc(type)}</a></p>'
        + actions
        + _table(headers, body_rows, id="dead", empty="no dead letters")
    )
    return layout(f"Dead letters: {type}", body)


def purge_confirm(type: str, count: int, *, csrf: str) -> str:
    """The confirmation step of a purge: nothing is deleted until this form is sent."""
    body = (
        f"<h1>Purge the dead letters of {esc(type)}?</h1>"
        f"<p>This deletes all {count} dead-lettered job(s) of {esc(type)} for good; they cannot "
        "be retried afterwards.</p>"
        f'<form method="post" action="/dead/{esc(path_segment(type))}/purge">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<input type="hidden" name="confirm" value="yes">'
        f'<button type="submit" class="danger" id="confirm-purge">Delete {count} dead job(s)'
        f'</button> <a href="/dead/{esc(path_segment(type))}">Cancel</a></form>'
    )
    return layout(f"Purge {type}?", body)


def workers(
    live: Sequence[Mapping[str, Any]],
    orphans: Sequence[tuple[str, str, int, float]],
    *,
    refresh_s: float,
) -> str:
    """Live workers (``workers --json`` items) and consumers that have no live worker."""
    rows = [
        f'<tr data-consumer="{esc(w["consumer"])}"><td>{esc(w["consumer"])}</td>'
        f"<td>{esc(w['host'])}</td><td>{esc(w['pid'])}</td><td>{esc(', '.join(w['types']))}</td>"
        f"<td>{esc(concurrency_text(w))}</td><td data-field=in_flight>{esc(w['in_flight'])}</td>"
        f"<td data-field=processed>{esc(w['processed'])}</td>"
        f"<td>{esc(age(w['heartbeat_age_s']))} ago</td></tr>"
        for w in live
    ]
    headers = ["consumer", "host", "pid", "types", "concurrency", "in flight", "processed"]
    lost = [
        f'<tr data-consumer="{esc(name)}"><td>{esc(t)}</td><td>{esc(name)}</td><td>{held}</td>'
        f"<td>{esc(age(idle))}</td></tr>"
        for t, name, held, idle in orphans
    ]
    body = (
        f"<h1>Workers</h1><p class=status>{len(live)} live worker(s), from their heartbeats "
        "(a worker is live while its last heartbeat is younger than three periods).</p>"
        + _table([*headers, "heartbeat"], rows, id="workers", empty="no live worker")
        + "<h2>Consumers without a live worker</h2><p class=status>A consumer of a type's group "
        "whose worker stopped: the jobs it holds are taken over by a live worker after "
        "claim_after; one holding none can be removed with <code>streamq workers --prune</code>."
        "</p>" + _table(["type", "consumer", "in flight", "idle"], lost, id="orphans", empty="none")
    )
    return layout("Workers", body, refresh_s=refresh_s)


def job(type: str, job_id: str, doc: Mapping[str, Any] | None, *, types: Sequence[str]) -> str:
    """The job search: the form, and where the job is (a ``job --json`` document)."""
    options = "".join(f'<option value="{esc(t)}">' for t in types)
    form = (
        '<form id="find-job" class="actions" action="/job" method="get" role="search">'
        f'<input name="type" value="{esc(type)}" placeholder="type" list="job-types" '
        f'aria-label="job type" required><datalist id="job-types">{options}</datalist>'
        f'<input name="id" value="{esc(job_id)}" placeholder="job id" size="40" '
        'aria-label="job id" required><button type="submit">Find</button></form>'
    )
    if doc is None:
        body = (
            "<h1>Find a job</h1>" + form + '<p class="hint">Where a job is by its id: scheduled, '
            "waiting, running, retrying, dead, done (finished: its record is kept a day by "
            "default), cancelled, or unknown (never seen, or its record expired). The lookup "
            "walks the type's streams; on a long backlog "
            "it takes a moment.</p>"
        )
        return layout("Find a job", body)
    rows = [
        f'<tr data-field="{esc(label)}"><th>{esc(label)}</th>'
        f"<td{' class=id' if label in ('job id', 'entry id', 'dead id') else ''}>"
        f"{esc(text)}</td></tr>"
        for label, text in job_state_rows(dict(doc))
    ]
    api = f"/api/job/{path_segment(type)}/{path_segment(job_id)}"
    body = (
        f'<h1>Job <span class="id">{esc(job_id)}</span></h1>'
        + form
        + f'<p class="status">state: <strong id="job-state" data-state="{esc(doc["state"])}">'
        f'{esc(doc["state"])}</strong> · <a href="{esc(api)}">as JSON</a></p>'
        + f'<table id="job"><tbody>{"".join(rows)}</tbody></table>'
    )
    return layout(f"Job {job_id}", body)


def error(status: int, message: str) -> str:
    """A page that says what went wrong, in one line."""
    return layout("Error", f'<h1>{status}</h1><p class="flash error">{esc(message)}</p>')
