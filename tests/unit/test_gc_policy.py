"""``streamq._eventloop.tune_gc``: the collector policy of a ``streamq consume`` worker, tried in
fresh interpreters (it changes the process's collector for good)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = (
    "import gc, json, sys\n"
    "{before}\n"
    "from streamq._eventloop import tune_gc\n"
    "print(json.dumps({{'tuned': tune_gc(), 'threshold': gc.get_threshold(), "
    "'frozen': gc.get_freeze_count()}}))\n"
)


def _probe(before: str = "", **env: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def test_a_worker_freezes_start_up_objects_and_collects_less_often() -> None:
    """Default: the start-up objects frozen, the youngest generation at 7000, the others as
    Python's; what it did is returned for the log line."""
    got = _probe()
    assert got["threshold"] == [7000, 10, 10]
    assert isinstance(got["tuned"], dict)
    assert got["tuned"]["gen0_threshold"] == 7000
    assert got["tuned"]["frozen_objects"] == got["frozen"]
    assert int(got["frozen"]) > 1000  # the interpreter and streamq, at least


def test_switched_off_or_chosen_by_the_application_it_is_left_alone() -> None:
    """``STREAMQ_GC_TUNE=0``, or thresholds the application set itself: nothing changes."""
    off = _probe(STREAMQ_GC_TUNE="0")
    assert (off["tuned"], off["threshold"], off["frozen"]) == (None, [700, 10, 10], 0)
    own = _probe("gc.set_threshold(1000, 5, 5)")
    assert (own["tuned"], own["threshold"], own["frozen"]) == (None, [1000, 5, 5], 0)
