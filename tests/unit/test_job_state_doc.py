"""The ``job`` document (``streamq job --json``, ``/api/job/...``) and its text: ``state`` on
top, the same keys whatever the state, only the state's fields set, the identity's user never
whole (JSON, text, repr)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamq import Job, JobState, Principal, _codec
from streamq._views_job import job_state_json, job_state_text

AT = datetime(2026, 12, 24, 18, tzinfo=UTC)
WHO = Principal(account_number="5678", org_id="1234", user="alice.secret")
JOB = Job(type="launch", args={"reservation_id": 42}, account_id=1, identity=WHO, id="j-1")
FIELDS = _codec.encode(JOB, "j-1")


def states() -> dict[str, JobState]:
    """One JobState of each state a lookup answers with today."""
    return {
        "scheduled": JobState(
            "scheduled", "launch", "j-1", JOB, AT, None, 0, AT, 30.0, fields=FIELDS
        ),
        "waiting": JobState("waiting", "launch", "j-1", JOB, AT, "1-0@1", 0, fields=FIELDS),
        "running": JobState(
            "running", "launch", "j-1", JOB, AT, "1-0", 3, consumer="w-1", idle_s=1.5,
            step=1, step_name="launch_instances", fields=FIELDS,
        ),
        "retrying": JobState(
            "retrying", "launch", "j-1", JOB, AT, None, 2, AT, 4.0,
            last_error="CloudError: throttled", step=2, fields=FIELDS,
        ),
        "dead": JobState(
            "dead", "launch", "j-1", JOB, AT, "1-0", 5, last_error="RuntimeError: boom",
            reason="failed 5 times (max_deliveries 5)", dead_id="2-0", dead_at=AT, fields=FIELDS,
        ),
        "unknown": JobState("unknown", "launch", "j-9"),
    }  # fmt: skip


#: The fields each state sets (beyond state, type, job_id, settled, job).
SET = {
    "scheduled": {"enqueued_at", "deliveries", "due_at", "due_in_s"},
    "waiting": {"enqueued_at", "entry_id", "deliveries"},
    "running": {
        "enqueued_at", "entry_id", "deliveries", "consumer", "idle_s", "step", "step_name",
    },
    "retrying": {"enqueued_at", "deliveries", "due_at", "due_in_s", "last_error", "step"},
    "dead": {
        "enqueued_at", "entry_id", "deliveries", "last_error", "reason", "dead_id", "dead_at",
    },
    "unknown": set(),
}  # fmt: skip


@pytest.mark.parametrize("state", list(SET))
def test_state_is_on_top_and_only_its_fields_are_set(state: str) -> None:
    """Every document has the same keys, ``state`` first; a field outside the state's is null."""
    doc = job_state_json(states()[state])
    keys = list(job_state_json(states()["unknown"]))
    assert list(doc) == keys
    assert keys[0] == "state"
    assert doc["state"] == state
    always = {"state", "type", "job_id", "settled", "job"}
    # priority: set wherever the job's fields are known (every state here but unknown)
    shown = SET[state] | ({"priority"} if state != "unknown" else set())
    assert {k for k, v in doc.items() if v is not None} - always == shown


def test_times_in_the_document() -> None:
    """due_at is ISO 8601 with Z (as scheduled --json); enqueued_at and dead_at Unix seconds."""
    assert job_state_json(states()["scheduled"])["due_at"] == "2026-12-24T18:00:00Z"
    dead = job_state_json(states()["dead"])
    assert dead["dead_at"] == dead["enqueued_at"] == AT.timestamp()


def test_the_identity_s_user_is_masked_everywhere() -> None:
    """The job summary, the text and the repr show the user masked, never whole."""
    for state in states().values():
        doc = job_state_json(state)
        assert "alice.secret" not in str(doc)
        assert "alice.secret" not in job_state_text(doc)
        assert "alice.secret" not in repr(state)
    doc = job_state_json(states()["running"])
    assert doc["job"]["user"] == "al***"
    assert doc["job"]["org_id"] == "1234"
    assert doc["job"]["args"] == {"reservation_id": 42}


def test_an_undecodable_job_says_why() -> None:
    """A poison entry's document holds why it cannot be read and its field sizes."""
    poison = JobState("dead", "launch", "j-1", reason="poison: x", fields={b"job": b"{"})
    doc = job_state_json(poison)
    assert set(doc["job"]) == {"undecodable", "field_sizes"}
    assert doc["job"]["field_sizes"] == {"job": 1}


def test_the_text_shows_the_state_s_fields_only() -> None:
    """``streamq job`` text: the state's own lines (running: consumer, idle, deliveries), not
    another state's (no reason, no due time); unknown shows the state alone."""
    text = job_state_text(job_state_json(states()["running"]))
    lines = dict(line.split(None, 1) for line in text.splitlines() if " " in line.strip())
    assert lines["state"].strip() == "running"
    assert lines["consumer"].strip() == "w-1"
    assert lines["idle"].strip() == "1.5s"
    assert lines["step"].strip() == "1 (launch_instances)"
    assert "reason" not in lines
    assert "due" not in text
    unknown = job_state_text(job_state_json(states()["unknown"]))
    assert unknown.splitlines()[0].split() == ["state", "unknown"]
    assert len(unknown.splitlines()) == 3
    unsure = job_state_text(job_state_json(JobState("unknown", "t", "x", settled=False)))
    assert "ask again" in unsure


def test_repr_shows_what_applies() -> None:
    """A JobState's repr shows its state's fields, not a row of Nones."""
    shown = repr(states()["retrying"])
    assert shown.startswith("JobState(state='retrying', type='launch', job_id='j-1'")
    assert "last_error='CloudError: throttled'" in shown
    assert "consumer" not in shown
    assert "settled" not in shown
    assert "settled=False" in repr(JobState("unknown", "t", "x", settled=False))
