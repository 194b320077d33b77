"""The ratio table of a benchmark run: each streamq figure beside its reference, as a rate.

Every benchmark of the suite records in ``extra_info``:

- ``ops_per_round``: how many operations (or jobs) one timed round performs; the rate is
  ``ops_per_round / median round time`` (pytest-benchmark already divides by ``iterations``);
- ``unit``: what is counted (``jobs``, ``enqueues``, ``conversions`` ...);
- ``reference``: true for the one benchmark of its group that the others are compared with
  (the raw redis-py baseline, or pydantic for the codec);
- ``target``: optionally, the ratio to the reference that later work aims for.

The tracing-overhead benchmark (``test_bench_tracing.py``) is not a streamq-vs-reference pair:
its entries carry ``extra_info["tracing"]`` (per-variant rates measured in subprocesses) and are
left out of that table; :func:`format_tracing` prints them as a table of their own.

``benchmarks/conftest.py`` prints these tables after ``make bench``. On its own::

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
        if "tracing" in b["extra_info"]:
            continue  # per-variant figures of their own: see format_tracing
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


#: How the tracing table names the variants of benchmarks/tracing_variants.py.
TRACING_LABELS = {
    "off": "no SDK (tracing off)",
    "sdk-noop": "SDK, no-op exporter",
    "sdk-memory": "SDK, in-memory exporter",
    "stripped": "instrumentation stripped",
}


def format_tracing(benchmarks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The tracing-overhead entries as text: median rate and CPU per job of each variant, then
    the ratios (of the medians; per round, the median and range of the paired ratios)."""
    lines: list[str] = []
    for b in benchmarks:
        t = b["extra_info"].get("tracing")
        if not t:
            continue
        loads = t["loadavg_1min_per_round"]
        lines.append(
            f"{b.get('group') or b['name']}: {t['jobs_per_round']} jobs x {t['rounds']} rounds "
            f"per variant, interleaved; 1-min load {min(loads):.2f}-{max(loads):.2f}"
        )
        cells = [("variant", "rate (median)", "CPU per job", "rounds (jobs/s)")]
        for name, v in t["variants"].items():
            cells.append(
                (
                    TRACING_LABELS.get(name, name),
                    f"{_si(v['median_jobs_per_s'])} jobs/s",
                    f"{v['median_cpu_us_per_job']:.1f} us",
                    " ".join(_si(r) for r in v["jobs_per_s"]),
                )
            )
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        for c in cells:
            lines.append(
                "  "
                + "  ".join(
                    cell.rjust(w) if 1 <= i <= 2 else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(c, widths, strict=True))
                ).rstrip()
            )
        for name, r in t["ratios"].items():
            lines.append(
                f"  {name:<15} {r['of_medians']:.3f} of medians; per round "
                f"{r['paired_median']:.3f} ({r['paired_min']:.3f}-{r['paired_max']:.3f}); "
                f"by CPU per job {r['cpu_per_job']:.3f}"
            )
        runner = t.get("runner")
        if runner:
            lines.append("  Runner.run alone, us per delivery (best / median of all runs):")
            for name, us in runner["us_per_job"].items():
                label = TRACING_LABELS.get(name, name)
                lines.append(f"    {label:<26} {us['best']:7.1f} / {us['median']:.1f}")
            lines.append(
                f"    tracing off adds {runner['off_minus_stripped_us']:.1f} us per job (best "
                f"against best): {runner['off_minus_stripped_share_of_e2e_cpu']:.1%} of the "
                "stripped worker's CPU per job end to end"
            )
        claim = t["ratios"]["off/stripped"]["of_medians"]
        lines.append(
            f"  tracing off keeps {claim:.1%} of the stripped worker's throughput "
            f"(claim: at least {t['claim_off_over_stripped_at_least']:.0%})"
        )
    return lines


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
    table = rows(results["benchmarks"])
    tracing = format_tracing(results["benchmarks"])
    if table:
        for line in format_table(table):
            print(line)
    if tracing:
        if table:
            print()
        for line in tracing:
            print(line)
    if args.strip is not None:
        args.strip.write_text(json.dumps(strip_data(results), indent=2) + "\n")
        print(f"\nwrote {args.strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
