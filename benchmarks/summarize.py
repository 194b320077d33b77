"""The ratio table of a benchmark run: each streamq figure beside its reference, as a rate.

Every benchmark of the suite records in ``extra_info``:

- ``ops_per_round``: how many operations (or jobs) one timed round performs; the rate is
  ``ops_per_round / median round time`` (pytest-benchmark already divides by ``iterations``);
- ``unit``: what is counted (``jobs``, ``enqueues``, ``conversions`` ...);
- ``reference``: true for the one benchmark of its group that the others are compared with
  (the raw redis-py baseline, or pydantic for the codec);
- ``target``: optionally, the ratio to the reference that later work aims for.

``benchmarks/conftest.py`` prints this table after ``make bench``. On its own::

    python -m benchmarks.summarize [RESULTS_JSON]    # default: benchmarks/results/latest.json
    python -m benchmarks.summarize RESULTS_JSON --strip OUT    # and a copy without per-round data
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path(__file__).parent / "results" / "latest.json"


@dataclass(frozen=True, slots=True)
class Row:
    """One benchmark as a rate, with its ratio to its group's reference (if the group has one)."""

    group: str
    name: str
    rate: float
    unit: str
    is_reference: bool
    ratio: float | None
    target: float | None


def rows(benchmarks: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Rates and ratios of pytest-benchmark entries (``as_dict`` form), in run order."""
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for b in benchmarks:
        by_group.setdefault(b.get("group") or "(no group)", []).append(b)
    out: list[Row] = []
    for group, members in by_group.items():
        rates = [_rate(b) for b in members]
        refs = [r for b, r in zip(members, rates, strict=True) if b["extra_info"].get("reference")]
        ref_rate = refs[0] if len(refs) == 1 else None
        for b, rate in zip(members, rates, strict=True):
            info = b["extra_info"]
            out.append(
                Row(
                    group=group,
                    name=b["name"],
                    rate=rate,
                    unit=info.get("unit", "ops"),
                    is_reference=bool(info.get("reference")),
                    ratio=None if ref_rate is None else rate / ref_rate,
                    target=info.get("target"),
                )
            )
    return out


def _rate(bench: Mapping[str, Any]) -> float:
    per_round = bench["extra_info"].get("ops_per_round", 1)
    return float(per_round / bench["stats"]["median"])


def format_table(table: Sequence[Row]) -> list[str]:
    """The rows as aligned text lines: rate, time per op, ratio to the reference, target."""
    header = ("group", "benchmark", "rate", "per op", "vs ref", "target")
    lines = [header]
    for r in table:
        if r.is_reference:
            vs = "ref"
        elif r.ratio is None:
            vs = "-"
        else:
            vs = f"{r.ratio:.2f}x"
        target = "-"
        if r.target is not None and r.ratio is not None:
            target = f">={r.target:.2f} {'met' if r.ratio >= r.target else 'MISSED'}"
        lines.append(
            (
                r.group,
                r.name,
                f"{_si(r.rate)} {r.unit}/s",
                _duration(1 / r.rate),
                vs,
                target,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for i, line in enumerate(lines):
        cells = [
            cell.rjust(w) if 2 <= col <= 4 else cell.ljust(w)
            for col, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    return text


def _si(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def _duration(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.0f} ns"


def strip_data(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of a results document without the per-round timings (small enough to commit)."""
    copy = dict(results)
    copy["benchmarks"] = [
        {**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
        for b in results["benchmarks"]
    ]
    return copy


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of a results JSON file; optionally write a stripped copy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--strip", type=Path, metavar="OUT", help="write a copy without data")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    for line in format_table(rows(results["benchmarks"])):
        print(line)
    if args.strip is not None:
        args.strip.write_text(json.dumps(strip_data(results), indent=2) + "\n")
        print(f"\nwrote {args.strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
