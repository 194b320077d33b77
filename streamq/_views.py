"""What the CLI and the dashboard show: the ``--json`` documents and the formatting helpers.

The CLI's ``--json`` output and the dashboard's ``/api/*`` answers are built by these functions,
so scripts, the page and the terminal see the same truth; docs/cli-json.md is their schema and
stability promise. Nothing here imports the CLI's or the dashboard's frameworks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from streamq import _codec
from streamq._inspect import PendingJob, ScheduledJob, TypeStats
from streamq._job import mask
from streamq._schedules import Schedule, describe_tick
from streamq.backends._base import DeadEntry, Fields
from streamq.backends._flow_base import KeyLoad

# formatting -------------------------------------------------------------------------------------


def age(seconds: float | None) -> str:
    """A short human duration: ``250ms``, ``4.2s``, ``3.5m``, ``2.0h``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


#: The widest last error a table row shows (the JSON has it whole).
ERROR_WIDTH = 60


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis; ``-`` for none."""
    line = " ".join(text.split())
    if not line:
        return "-"
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain, aligned text table (stable for scripts that grep it, no colour codes)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def paused_cell(stats: TypeStats, now: float) -> str:
    """The ``paused`` column of the stats table: ``-``, or for how long (``for 3.5m``)."""
    if not stats.paused:
        return "-"
    if stats.paused_since is None:
        return "yes"
    return f"for {age(max(0.0, now - stats.paused_since))}"


def stats_table(stats: list[TypeStats], now: float | None = None) -> str:
    """The ``streamq stats`` table (the demo prints it too); ``now`` (Unix seconds) for how
    long a paused type has been paused."""
    now = time.time() if now is None else now
    headers = ["type", "waiting", "scheduled", "held", "in flight", "oldest", "dead"]
    headers += ["processed"]
    headers += ["failed", "retried", "cancelled", "consumers", "paused"]
    rows = [
        [
            s.type,
            str(s.waiting),
            str(s.scheduled),
            str(s.held),
            str(s.in_flight),
            age(s.oldest_in_flight_s),
            str(s.dead),
            str(s.processed),
            str(s.failed),
            str(s.retried),
            str(s.cancelled),
            str(len(s.consumers)),
            paused_cell(s, now),
        ]
        for s in stats
    ]
    levels = [
        f"{s.type}: {by_priority_line(s.waiting_by_priority)}"
        for s in stats
        if s.waiting_by_priority
    ]
    return "\n".join([table(headers, rows), *levels])


def by_priority_line(waiting: dict[str, int]) -> str:
    """``waiting by priority: high 2, default 5, low 0``: a type's waiting jobs per level."""
    return "waiting by priority: " + ", ".join(f"{k} {n}" for k, n in waiting.items())


def keys_table(type_: str, loads: list[KeyLoad]) -> str:
    """The ``streamq stats --keys TYPE`` table: the busiest key values of a type with a
    per-key limit."""
    if not loads:
        return f"{type_}: no key has a job running or held"
    rows = [[k.key or "(none)", str(k.running), str(k.held)] for k in loads]
    return table(["key", "running", "held"], rows)


# the documents of docs/cli-json.md --------------------------------------------------------------


def keys_json(load: KeyLoad) -> dict[str, Any]:
    """One key value's load in the documented JSON schema (``stats --keys --json``)."""
    return {"key": load.key, "running": load.running, "held": load.held}


def stats_json(stats: TypeStats) -> dict[str, Any]:
    """One type's stats in the documented JSON schema."""
    return {
        "type": stats.type,
        "waiting": stats.waiting,
        "in_flight": stats.in_flight,
        "oldest_in_flight_s": stats.oldest_in_flight_s,
        "dead": stats.dead,
        "enqueued": stats.enqueued,
        "processed": stats.processed,
        "failed": stats.failed,
        "retried": stats.retried,
        "cancelled": stats.cancelled,
        "dead_lettered": stats.dead_lettered,
        "consumers": {
            name: {"in_flight": c.in_flight, "idle_s": c.idle_s}
            for name, c in stats.consumers.items()
        },
        "scheduled": stats.scheduled,
        "held": stats.held,
        "paused": stats.paused,
        "paused_since": stats.paused_since,
        "pause_reason": stats.pause_reason or None,
        "waiting_by_priority": dict(stats.waiting_by_priority),
    }


def scheduled_json(job: ScheduledJob) -> dict[str, Any]:
    """One job waiting in the schedule in the documented JSON schema."""
    return {
        "job_id": job.job_id,
        "due_at": job.due_at.isoformat().replace("+00:00", "Z"),
        "due_in_s": job.due_in_s,
        "why": job.why,
        "deliveries": job.deliveries,
        "last_error": job.last_error or None,
    }


def scheduled_table(jobs: Sequence[ScheduledJob], total: int) -> str:
    """The ``streamq scheduled`` table: the soonest due first, under a count."""
    head = f"{total} scheduled"
    if len(jobs) < total:
        head += f" (showing the {len(jobs)} due soonest)"
    if not jobs:
        return head
    rows = [
        [
            j.job_id or "?",
            j.due_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            age(j.due_in_s) if j.due_in_s >= 0 else "now",
            j.why,
            str(j.deliveries),
            shorten(j.last_error, ERROR_WIDTH),
        ]
        for j in jobs
    ]
    headers = ["job id", "due at", "due in", "why", "deliveries", "last error"]
    return head + "\n" + table(headers, rows)


def pending_json(job: PendingJob) -> dict[str, Any]:
    """One job in flight in the documented JSON schema."""
    return {
        "job_id": job.job_id,
        "entry_id": job.entry_id,
        "consumer": job.consumer,
        "idle_s": job.idle_s,
        "deliveries": job.deliveries,
        "priority": job.priority,
    }


def dead_job_summary(entry: DeadEntry) -> dict[str, Any]:
    """What the dead job was, from its original fields; the identity's user only masked."""
    return job_summary(entry.fields)


def job_summary(fields: Fields) -> dict[str, Any]:
    """What a job is, from its entry's fields; the identity's user only masked."""
    try:
        job = _codec.decode(fields).job
    except Exception as exc:  # poison: show why it cannot be read, not a traceback
        raw = {k.decode(errors="replace"): len(v) for k, v in fields.items()}
        return {"undecodable": str(exc), "field_sizes": raw}
    ident = job.identity
    return {
        "type": job.type,
        "account_id": job.account_id,
        "org_id": ident.org_id,
        "account_number": ident.account_number,
        "user": mask(ident.user),
        "request_id": job.request_id,
        "args": job.args,
    }


def dead_json(entry: DeadEntry, *, full: bool = False) -> dict[str, Any]:
    """One dead letter in the documented JSON schema (``full`` adds the job)."""
    out: dict[str, Any] = {
        "job_id": entry.job_id,
        "dead_id": entry.dead_id,
        "entry_id": entry.entry_id,
        "reason": entry.reason,
        "error": entry.error,
        "deliveries": entry.deliveries,
        "dead_at": entry.dead_at,
    }
    if full:
        out["job"] = dead_job_summary(entry)
    return out


def dead_enqueued_at(entry: DeadEntry) -> float | None:
    """When the dead job was enqueued, from its envelope; None when it cannot be read."""
    try:
        at = _codec.decode(entry.fields).enqueued_at
    except Exception:  # poison: no readable envelope, so no enqueue time either
        return None
    return at or None


def worker_json(record: dict[str, str], now: float) -> dict[str, Any]:
    """One live worker in the documented JSON schema."""
    beat = float(record.get("heartbeat_at", "0") or 0)
    return {
        "consumer": record["id"],
        "host": record.get("host", ""),
        "pid": int(record.get("pid", "0") or 0),
        "types": [name for name in record.get("types", "").split(",") if name],
        "concurrency": int(record.get("concurrency", "0") or 0),
        "in_flight": int(record.get("in_flight", "0") or 0),
        "processed": int(record.get("processed", "0") or 0),
        "heartbeat_age_s": round(max(0.0, now - beat), 3),
        "paused": [name for name in record.get("paused", "").split(",") if name],
        "type_concurrency": _caps(record.get("type_concurrency", "")),
        **_supervisor(record.get("supervisor", "")),
    }


def _supervisor(text: str) -> dict[str, int | None]:
    """``PID:INDEX`` (a heartbeat record of a ``consume -p`` child) as its two fields."""
    pid, _, index = text.partition(":")
    if pid.isdigit() and index.isdigit():
        return {"supervisor_pid": int(pid), "child_index": int(index)}
    return {"supervisor_pid": None, "child_index": None}


def _caps(text: str) -> dict[str, int]:
    """``launch=8,noop=64`` (a heartbeat record's per-type caps) as {type: cap}."""
    caps: dict[str, int] = {}
    for item in text.split(","):
        name, _, n = item.partition("=")
        if name and n.isdigit():
            caps[name] = int(n)
    return caps


def concurrency_text(worker: Mapping[str, Any]) -> str:
    """A worker's concurrency as the table and the dashboard show it: ``16`` or, with per-type
    caps, ``16 (launch≤2)``."""
    caps = worker.get("type_concurrency") or {}
    if not caps:
        return str(worker["concurrency"])
    return f"{worker['concurrency']} ({', '.join(f'{t}≤{n}' for t, n in caps.items())})"


def workers_doc(
    live: list[dict[str, str]], removed: list[tuple[str, str]], now: float
) -> dict[str, Any]:
    """The ``workers --json`` document: live workers' records and the consumers pruned."""
    return {
        "workers": [worker_json(record, now) for record in live],
        "pruned": [{"type": job_type, "consumer": name} for job_type, name in removed],
    }


def recover_doc(moved: list[PendingJob], *, dry_run: bool) -> dict[str, Any]:
    """The ``recover --json`` document: the jobs handed back (or, dry run, that would be)."""
    return {"dry_run": dry_run, "jobs": [pending_json(job) for job in moved]}


def schedule_json(schedule: Schedule, last_ms: int | None, now_ms: int) -> dict[str, Any]:
    """One declared schedule in the ``schedules --json`` schema, with its last and next tick."""
    next_ms = schedule.next_tick(now_ms)
    return {
        "name": schedule.name,
        "type": schedule.type,
        "every_s": schedule.interval if schedule.kind == "every" else None,
        "cron": schedule.expression if schedule.kind == "cron" else None,
        "tz": schedule.tz if schedule.kind == "cron" else None,
        "args": dict(schedule.args),
        "catch_up": schedule.catch_up,
        "last_tick_at": None if last_ms is None else last_ms / 1000,
        "next_tick_at": next_ms / 1000,
        "next_in_s": round((next_ms - now_ms) / 1000, 3),
    }


def schedules_table(docs: list[dict[str, Any]]) -> str:
    """The ``schedules`` table: what each schedule enqueues, when, and its last and next tick."""
    rows = []
    for d in docs:
        when = f"every {d['every_s']:g}s" if d["every_s"] is not None else f"{d['cron']} {d['tz']}"
        last = d["last_tick_at"]
        rows.append(
            [
                d["type"],
                when,
                describe_tick(None if last is None else round(last * 1000)) or "-",
                describe_tick(round(d["next_tick_at"] * 1000)),
                age(d["next_in_s"]),
                d["name"],
            ]
        )
    return table(["TYPE", "WHEN", "LAST TICK (UTC)", "NEXT TICK (UTC)", "IN", "NAME"], rows)
