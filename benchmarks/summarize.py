"""The ratio table of a benchmark run: each streamq figure beside its reference, as a rate.

Every benchmark of the suite records in ``extra_info``:

- ``ops_per_round``: how many operations (or jobs) one timed round performs; the rate is
  ``ops_per_round / median round time`` (pytest-benchmark already divides by ``iterations``);
- ``unit``: what is counted (``jobs``, ``enqueues``, ``conversions`` ...);
- ``reference``: true for the one benchmark of its group that the others are compared with
  (the raw redis-py baseline, or pydantic for the codec);
- ``target``: optionally, the ratio to the reference that later work aims for;
- ``server_cpu``: optionally, the server's own CPU per operation (``INFO cpu``: ``us_per_op``,
  the median over the rounds, and ``us_per_op_per_round``); :func:`format_server_cpu` prints
  it beside its group's reference.

The tracing-overhead benchmark (``test_bench_tracing.py``) is not a streamq-vs-reference pair:
its entries carry ``extra_info["tracing"]`` (per-variant rates measured in subprocesses) and are
left out of that table; :func:`format_tracing` prints them as a table of their own. Likewise
latency benchmarks (``extra_info["latency"]``: percentiles, see ``_latency.py``) are compared
with their group's reference by :func:`format_latency`, and the recovery benchmark
(``extra_info["recovery"]``) with its configured ``claim_after`` by :func:`format_recovery`.

``benchmarks/conftest.py`` prints these tables after ``make bench`` and writes the chart
(:func:`write_chart`) next to the results JSON. On its own::

    python -m benchmarks.summarize [RESULTS_JSON]    # default: benchmarks/results/latest.json
    python -m benchmarks.summarize RESULTS_JSON --strip OUT    # and a copy without per-round data
    python -m benchmarks.summarize RESULTS_JSON --no-chart     # the tables only

The chart goes next to the JSON, with the same name: ``results/NAME.json`` -> ``results/NAME.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._text import aligned
from benchmarks.operations import format_processes, operations_figures, plot_operations

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
        if not _is_rate(b):
            continue  # figures of their own: see format_tracing, format_latency, format_recovery
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


#: extra_info keys of the benchmarks that report something other than a rate.
NOT_RATES = ("tracing", "latency", "recovery", "server_cost", "processes")


def _is_rate(bench: Mapping[str, Any]) -> bool:
    return not any(k in bench["extra_info"] for k in NOT_RATES)


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
    "sdk-batch": "traces, batch, 100 % sampled",
    "sdk-batch-10": "traces, batch, 10 % sampled",
    "sdk-metrics": "metrics SDK only",
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
        cells = [("variant", "rate (median)", "CPU per job", "spans/job", "rounds (jobs/s)")]
        for name, v in t["variants"].items():
            spans = v.get("spans_per_job")
            cells.append(
                (
                    TRACING_LABELS.get(name, name),
                    f"{_si(v['median_jobs_per_s'])} jobs/s",
                    f"{v['median_cpu_us_per_job']:.1f} us",
                    "-" if spans is None else f"{spans:.2f}",
                    " ".join(_si(r) for r in v["jobs_per_s"]),
                )
            )
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        for c in cells:
            lines.append(
                "  "
                + "  ".join(
                    cell.rjust(w) if 1 <= i <= 3 else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(c, widths, strict=True))
                ).rstrip()
            )
        for name, r in t["ratios"].items():
            target = r.get("target_at_least")
            aim = ""
            if target is not None:
                aim = f"; target >={target:.2f} {'met' if r['of_medians'] >= target else 'MISSED'}"
            lines.append(
                f"  {name:<16} {r['of_medians']:.3f} of medians; per round "
                f"{r['paired_median']:.3f} ({r['paired_min']:.3f}-{r['paired_max']:.3f}); "
                f"by CPU per job {r['cpu_per_job']:.3f}{aim}"
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


# Server CPU per operation against the group's reference -----------------------------------------


def format_server_cpu(benchmarks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The entries with ``extra_info["server_cpu"]`` as text: the server's CPU per operation
    (median and range of the rounds) and its ratio to the reference of the group."""
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for b in benchmarks:
        if "server_cpu" in b["extra_info"]:
            by_group.setdefault(b.get("group") or "(no group)", []).append(b)
    cells = [("group", "benchmark", "server CPU per op", "rounds", "vs ref")]
    for group, members in by_group.items():
        refs = [b for b in members if b["extra_info"].get("reference")]
        ref = refs[0]["extra_info"]["server_cpu"]["us_per_op"] if len(refs) == 1 else None
        for b in members:
            info = b["extra_info"]
            cpu = info["server_cpu"]
            per_round = cpu["us_per_op_per_round"]
            if info.get("reference"):
                vs = "ref"
            elif ref is None:
                vs = "-"
            else:
                vs = f"{cpu['us_per_op'] / ref:.2f}x"
            cells.append(
                (
                    group,
                    b["name"],
                    f"{cpu['us_per_op']:.2f} us per {info.get('unit', 'ops').removesuffix('s')}",
                    f"{min(per_round):.2f}-{max(per_round):.2f} us",
                    vs,
                )
            )
    if len(cells) == 1:
        return []
    return aligned(cells, right=range(2, 5))


# Server CPU per job, streamq's halves against the bare commands ----------------------------------

#: Commands listed per half under the server-cost table (the costliest first).
SERVER_COST_COMMANDS = 6


def format_server_cost(benchmarks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ``extra_info["server_cost"]`` entries (``test_bench_server_cost.py``) as text: per
    half, streamq's server CPU per job beside the floor's (medians and ranges of the rounds),
    their per-round ratio against the target, then the costliest commands of each half."""
    lines: list[str] = []
    for b in benchmarks:
        cost = b["extra_info"].get("server_cost")
        if not cost:
            continue
        idle = cost["idle_us_per_s"]
        lines.append(
            f"{cost['jobs']} jobs a round ({cost['single_jobs']} one at a time), "
            f"{cost['rounds']} rounds, floor batch {cost['batch']}; idle cost taken out: "
            f"{idle['median']:.0f} us/s ({idle['min']:.0f}-{idle['max']:.0f})"
        )
        target = cost["target_at_most"]
        cells = [("half", "streamq", "floor", "ratio (rounds)", "target")]
        for half, h in cost["halves"].items():
            s, f, r = h["streamq_us"], h["floor_us"], h["ratio"]
            cells.append(
                (
                    half,
                    f"{s['median']:.2f} us ({s['min']:.2f}-{s['max']:.2f})",
                    f"{f['median']:.2f} us ({f['min']:.2f}-{f['max']:.2f})",
                    f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})",
                    f"<={target:.2f}x {'met' if r['median'] <= target else 'MISSED'}",
                )
            )
        lines += ["  " + line for line in aligned(cells, right=range(1, 4))]
        for half, h in cost["halves"].items():
            top = list(h.get("commands", {}).items())[:SERVER_COST_COMMANDS]
            if top:
                lines.append(
                    f"  {half}, streamq per job (calls, us): "
                    + ", ".join(
                        f"{name} {c['calls_per_job']:.3g} {c['us_per_job']:.2f}" for name, c in top
                    )
                )
    return lines


# Latency: percentiles against the group's reference -------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """One latency benchmark: percentiles in microseconds, and the p50/p99 ratios to the
    reference of its group (lower is better: 1.2x means 20 % slower than the reference)."""

    group: str
    name: str
    p50: float
    p99: float
    max: float
    samples: int
    is_reference: bool
    ratio_p50: float | None
    ratio_p99: float | None
    #: the p50 ratio that later work aims to stay under, if any
    target_p50_at_most: float | None
    rate_per_s: float | None


def latency_rows(benchmarks: Iterable[Mapping[str, Any]]) -> list[LatencyRow]:
    """The latency entries (``extra_info["latency"]``), in run order, with their ratios."""
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for b in benchmarks:
        if "latency" in b["extra_info"]:
            by_group.setdefault(b.get("group") or "(no group)", []).append(b)
    out: list[LatencyRow] = []
    for group, members in by_group.items():
        refs = [b["extra_info"]["latency"] for b in members if b["extra_info"].get("reference")]
        ref = refs[0] if len(refs) == 1 else None
        for b in members:
            info = b["extra_info"]
            lat = info["latency"]
            out.append(
                LatencyRow(
                    group=group,
                    name=b["name"],
                    p50=lat["p50"],
                    p99=lat["p99"],
                    max=lat["max"],
                    samples=lat["samples"],
                    is_reference=bool(info.get("reference")),
                    ratio_p50=None if ref is None else lat["p50"] / ref["p50"],
                    ratio_p99=None if ref is None else lat["p99"] / ref["p99"],
                    target_p50_at_most=info.get("target_p50_at_most"),
                    rate_per_s=lat.get("rate_per_s"),
                )
            )
    return out


def format_latency(table: Sequence[LatencyRow]) -> list[str]:
    """The latency rows as aligned text: p50, p99, max, ratios to the reference, target."""
    header = ("group", "benchmark", "p50", "p99", "max", "samples", "p50 vs ref", "p99 vs ref")
    cells = [(*header, "target")]
    for r in table:
        if r.is_reference:
            vs50 = vs99 = "ref"
        else:
            vs50 = "-" if r.ratio_p50 is None else f"{r.ratio_p50:.2f}x"
            vs99 = "-" if r.ratio_p99 is None else f"{r.ratio_p99:.2f}x"
        target = "-"
        if r.target_p50_at_most is not None and r.ratio_p50 is not None:
            met = "met" if r.ratio_p50 <= r.target_p50_at_most else "MISSED"
            target = f"p50 <={r.target_p50_at_most:.2f}x {met}"
        cells.append(
            (
                r.group,
                r.name,
                _duration(r.p50 / 1e6),
                _duration(r.p99 / 1e6),
                _duration(r.max / 1e6),
                str(r.samples),
                vs50,
                vs99,
                target,
            )
        )
    return aligned(cells, right=range(2, 8))


def format_recovery(benchmarks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The recovery entries as text: kill -> restart times against the configured claim_after."""
    cells = [
        (
            "claim_after",
            "heartbeat",
            "pass every",
            "expected",
            "min",
            "median",
            "max",
            "median / claim_after",
            "jobs x rounds",
        )
    ]
    for b in benchmarks:
        r = b["extra_info"].get("recovery")
        if not r:
            continue
        low, high = r["expected_s"]
        cells.append(
            (
                f"{r['claim_after_s']:g} s",
                f"{r['heartbeat_s']:.3g} s",
                f"{r['pass_interval_s']:g} s",
                f"{low:.3g}-{high:.3g} s",
                f"{r['min_s']:.3f} s",
                f"{r['median_s']:.3f} s",
                f"{r['max_s']:.3f} s",
                f"{r['median_over_claim_after']:.3f}",
                f"{r['jobs']} x {len(r['rounds'])}",
            )
        )
    if len(cells) == 1:
        return []
    return aligned(cells, right=range(4, 8))


# The chart ---------------------------------------------------------------------------------------


def chart_path(results: Path) -> Path:
    """Where the chart of a results file goes: beside it, ``NAME.json`` -> ``NAME.png``."""
    return results.with_suffix(".png")


def write_chart(
    benchmarks: Sequence[Mapping[str, Any]], out: Path, *, title: str = ""
) -> Path | None:
    """A PNG of the run: rates against their references, latency percentiles, recovery times,
    the operations ratios (``operations.py``).

    One panel per kind that the run has. Returns the path written, or None when there is
    nothing to draw or matplotlib (the ``bench`` extra) is not installed.
    """
    table = [r for r in rows(benchmarks) if r.ratio is not None or r.is_reference]
    latency = latency_rows(benchmarks)
    recovery = [b["extra_info"]["recovery"] for b in benchmarks if "recovery" in b["extra_info"]]
    operations = operations_figures(benchmarks)
    have = {
        "rates": bool(table),
        "latency": bool(latency),
        "recovery": bool(recovery),
        "operations": bool(operations),
    }
    panels = [name for name, present in have.items() if present]
    if not panels:
        return None
    try:
        import matplotlib  # the bench extra; only the chart needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    heights = {
        "rates": 0.5 * len(table) + 1.2,
        "latency": 0.5 * len(latency) + 1.2,
        "recovery": 3.4,
        "operations": 0.35 * len(operations) + 1.2,
    }
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(12, sum(heights[p] for p in panels) + 0.6),
        height_ratios=[heights[p] for p in panels],
        squeeze=False,
    )
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "rates":
            _plot_rates(ax, table)
        elif panel == "latency":
            _plot_latency(ax, latency)
        elif panel == "operations":
            plot_operations(ax, operations)
        else:
            _plot_recovery(ax, recovery)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _label(row: Row | LatencyRow) -> str:
    return f"{row.group}\n{row.name.removeprefix('test_')}"


def _plot_rates(ax: Any, table: Sequence[Row]) -> None:
    ys = range(len(table))
    colors = ["0.65" if r.is_reference else "C0" for r in table]
    ax.barh(list(ys), [r.rate for r in table], color=colors)
    ax.set_xscale("log")
    ax.set_yticks(list(ys), [_label(r) for r in table], fontsize=7)
    ax.invert_yaxis()
    for y, r in zip(ys, table, strict=True):
        note = f" {_si(r.rate)} {r.unit}/s"
        if not r.is_reference and r.ratio is not None:
            note += f"  {r.ratio:.2f}x ref"
            if r.target is not None:
                note += f" (target {r.target:.2f}x)"
        ax.text(r.rate, y, note, va="center", fontsize=7)
    ax.set_xlabel("rate per second (median round; log scale). Grey: the raw reference")
    ax.set_title("streamq vs reference, rates", fontsize=9)
    ax.set_xlim(right=max(r.rate for r in table) * 30)


def _plot_latency(ax: Any, table: Sequence[LatencyRow]) -> None:
    ys = list(range(len(table)))
    p99 = [r.p99 for r in table]
    p50 = [r.p50 for r in table]
    ax.barh(ys, p99, color=["0.85" if r.is_reference else "C1" for r in table], label="p99")
    ax.barh(ys, p50, color=["0.55" if r.is_reference else "C0" for r in table], label="p50")
    ax.set_yticks(ys, [_label(r) for r in table], fontsize=7)
    ax.invert_yaxis()
    for y, r in zip(ys, table, strict=True):
        note = f" p50 {_duration(r.p50 / 1e6)}, p99 {_duration(r.p99 / 1e6)}"
        if not r.is_reference and r.ratio_p50 is not None and r.ratio_p99 is not None:
            note += f"  ({r.ratio_p50:.2f}x / {r.ratio_p99:.2f}x ref)"
        ax.text(r.p99, y, note, va="center", fontsize=7)
    ax.set_xlabel("microseconds (dark: p50, light: p99; grey: the raw reference)")
    ax.set_title("latency percentiles", fontsize=9)
    ax.set_xlim(0, max(p99) * 1.8)


def _plot_recovery(ax: Any, recovery: Sequence[Mapping[str, Any]]) -> None:
    for i, r in enumerate(recovery):
        c = r["claim_after_s"]
        low, high = r["expected_s"]
        ax.fill_between([i - 0.3, i + 0.3], low, high, color="0.9", lw=0)
        ax.plot([i - 0.3, i + 0.3], [c, c], color="0.4", lw=1)
        n = len(r["rounds"])
        for k, rnd in enumerate(r["rounds"]):  # one column of dots per round
            x = i - 0.2 + 0.4 * k / max(1, n - 1)
            times = rnd["recovery_s"]
            ax.scatter([x] * len(times), times, s=8, color="C0", zorder=3)
        ax.text(i + 0.32, r["median_s"], f"median {r['median_s']:.2f} s", fontsize=7, va="center")
    ax.set_xticks(
        list(range(len(recovery))), [f"claim_after {r['claim_after_s']:g} s" for r in recovery]
    )
    ax.set_xlim(-0.6, len(recovery) - 0.1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("SIGKILL -> job running again (s)")
    ax.set_xlabel(
        "dots: jobs, one column per round; line: claim_after; "
        "band: claim_after - heartbeat .. claim_after + one recovery pass",
        fontsize=8,
    )
    ax.set_title("recovery after SIGKILL", fontsize=9)


def strip_data(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of a results document without the per-round timings (small enough to commit)."""
    copy = dict(results)
    copy["benchmarks"] = [
        {**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
        for b in results["benchmarks"]
    ]
    return copy


def sections(benchmarks: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Every table the run has, titled, in the order they are printed."""
    out = []
    table = rows(benchmarks)
    if table:
        out.append(("streamq vs reference (median rates)", format_table(table)))
    server_cpu = format_server_cpu(benchmarks)
    if server_cpu:
        out.append(("server CPU per operation (INFO cpu, median of the rounds)", server_cpu))
    server_cost = format_server_cost(benchmarks)
    if server_cost:
        out.append(("server CPU per job, streamq vs the bare commands (INFO cpu)", server_cost))
    latency = latency_rows(benchmarks)
    if latency:
        out.append(("latency (percentiles, ratios to the reference)", format_latency(latency)))
    recovery = format_recovery(benchmarks)
    if recovery:
        out.append(("recovery after SIGKILL (kill -> job running again)", recovery))
    tracing = format_tracing(benchmarks)
    if tracing:
        out.append(("tracing overhead (median rates, subprocess per variant)", tracing))
    processes = format_processes(benchmarks)
    if processes:
        out.append(("one worker process vs consume -p 2 (CLI, drain window)", processes))
    return out


def chart_title(when: str, load: float | None) -> str:
    """The chart's title line: when the run was made and how busy the machine was."""
    title = f"streamq benchmarks, {when}"
    if load is not None:
        title += f" (1-min load at start {load:.2f})"
    return title


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables of a results JSON file and write its chart; optionally a stripped copy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--strip", type=Path, metavar="OUT", help="write a copy without data")
    parser.add_argument("--no-chart", action="store_true", help="do not write RESULTS.png")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    benchmarks = results["benchmarks"]
    for i, (title, lines) in enumerate(sections(benchmarks)):
        if i:
            print()
        print(f"{title}:")
        for line in lines:
            print(line)
    if not args.no_chart:
        load = results.get("machine_info", {}).get("loadavg_1min_at_start")
        title = chart_title(results.get("datetime", "")[:16].replace("T", " "), load)
        written = write_chart(benchmarks, chart_path(args.results), title=title)
        if written is not None:
            print(f"\nwrote {written}")
    if args.strip is not None:
        args.strip.write_text(json.dumps(strip_data(results), indent=2) + "\n")
        print(f"\nwrote {args.strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
