"""The ``job`` views: a job's state (:class:`~streamq.JobState`) as the documented JSON of
``streamq job --json`` and ``/api/job`` (docs/cli-json.md), and as the rows of ``streamq job``
and the dashboard's lookup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from streamq._job_state import JobState
from streamq._views import age, job_summary


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _timestamp(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def job_state_json(state: JobState) -> dict[str, Any]:
    """The ``job --json`` document (and ``/api/job/{type}/{id}``): the state, and the fields
    that apply to it (null otherwise); docs/cli-json.md."""
    return {
        "state": state.state,
        "type": state.type,
        "job_id": state.job_id,
        "entry_id": state.entry_id,
        "enqueued_at": _timestamp(state.enqueued_at),
        "deliveries": state.deliveries,
        "due_at": _iso(state.due_at),
        "due_in_s": state.due_in_s,
        "consumer": state.consumer,
        "idle_s": state.idle_s,
        "step": state.step,
        "step_name": state.step_name,
        "last_error": state.last_error,
        "reason": state.reason,
        "dead_id": state.dead_id,
        "dead_at": _timestamp(state.dead_at),
        "ended_at": _timestamp(state.ended_at),
        "duration_s": state.duration_s,
        "priority": state.priority,
        "settled": state.settled,
        "job": job_summary(state.fields) if state.fields else None,
    }


#: What each state's text shows (``streamq job``, the dashboard), beside the state and the id.
JOB_STATE_LINES: dict[str, tuple[str, ...]] = {
    "scheduled": ("due_at", "due_in_s", "enqueued_at"),
    "waiting": ("entry_id", "priority", "deliveries", "enqueued_at"),
    "running": ("consumer", "idle_s", "deliveries", "step", "entry_id", "priority", "enqueued_at"),
    "retrying": (
        "due_at",
        "due_in_s",
        "deliveries",
        "step",
        "last_error",
        "priority",
        "enqueued_at",
    ),
    "dead": ("reason", "last_error", "deliveries", "dead_at", "dead_id", "entry_id", "enqueued_at"),
    "done": ("ended_at", "duration_s", "deliveries", "consumer"),
    "cancelled": ("ended_at",),
    "unknown": (),
}


def job_state_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``job`` document as (label, text) rows: what applies to its state, then the job."""
    rows = [("state", str(doc["state"])), ("type", str(doc["type"])), ("job id", doc["job_id"])]
    for key in JOB_STATE_LINES.get(doc["state"], ()):
        text = _state_value(key, doc[key])
        if key == "step" and doc.get("step_name"):
            text = f"{text} ({doc['step_name']})"
        rows.append((key.removesuffix("_s").replace("_", " "), text))
    if doc["state"] == "unknown" and not doc["settled"]:
        rows.append(("note", "jobs of this type kept moving while it was looked for: ask again"))
    for key, value in (doc["job"] or {}).items():
        if key == "type" or value in (None, ""):  # the type is shown above
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        rows.append((key.replace("_", " "), text))
    return rows


def _state_value(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if key == "due_in_s":
        return age(value) if value >= 0 else "now (due)"
    if key.endswith("_s"):
        return age(value)
    if key in ("enqueued_at", "dead_at", "due_at", "ended_at"):
        at = (
            datetime.fromisoformat(value) if key == "due_at" else datetime.fromtimestamp(value, UTC)
        )
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


def job_state_text(doc: dict[str, Any]) -> str:
    """The text of ``streamq job``: one ``label  value`` line each (values on one line)."""
    rows = job_state_rows(doc)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {' '.join(text.split())}" for label, text in rows)
