"""The operations figures of a benchmark run: one worker process against ``consume -p 2``
(``test_bench_processes.py``), traced against untraced (``test_bench_tracing.py``) and the server's
CPU per job against the bare commands (``test_bench_server_cost.py``), each beside its baseline
of the same run.

:func:`format_processes` prints the processes table; :func:`operations_figures` gathers the
ratios (with their targets) that :func:`plot_operations` draws as the chart's operations panel
(``summarize.write_chart``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks._text import aligned


@dataclass(frozen=True)
class Figure:
    """One ratio of the operations panel: what it compares, its value, and its target."""

    label: str
    value: float
    #: the target, and whether the value must be at least (True) or at most (False) it
    target: float | None = None
    at_least: bool = True

    @property
    def verdict(self) -> str:
        """``met``, ``MISSED``, or empty without a target."""
        if self.target is None:
            return ""
        ok = self.value >= self.target if self.at_least else self.value <= self.target
        return "met" if ok else "MISSED"


def format_processes(benchmarks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ``extra_info["processes"]`` entries as text: per process count, the rate, the
    server's and the workers' CPU (share of one core) and the workers' CPU per job; then the
    paired ratio and the cores it had."""
    lines: list[str] = []
    for b in benchmarks:
        p = b["extra_info"].get("processes")
        if not p:
            continue
        loads = p["loadavg_1min_per_round"]
        lines.append(
            f"{p['jobs_per_round']} noop jobs a round, {p['rounds']} rounds each, interleaved; "
            f"{p['cores']} cores; 1-min load {min(loads):.2f}-{max(loads):.2f}"
        )
        cells = [("command", "rate (median)", "server CPU", "workers' CPU", "per job", "rounds")]
        for name, v in p["variants"].items():
            cells.append(
                (
                    f"consume -p {name.removeprefix('p')}",
                    f"{v['jobs_per_s']['median'] / 1000:.1f}k jobs/s",
                    f"{v['server_cpu_share']['median']:.0%} of a core",
                    f"{v['worker_cpu_share']['median']:.0%} of a core",
                    f"{v['worker_cpu_us_per_job']['median']:.1f} us",
                    " ".join(f"{x / 1000:.1f}k" for x in v["jobs_per_s"]["per_round"]),
                )
            )
        lines += ["  " + line for line in aligned(cells, right=range(1, 5))]
        r = p["ratio_p2_p1"]
        lines.append(
            f"  -p 2 / -p 1: {r['median']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f}); {_limit(p)}"
        )
    return lines


def _limit(p: Mapping[str, Any]) -> str:
    """What holds ``-p 2`` back, read off the figures: the server's core, or the machine's."""
    two = p["variants"]["p2"]
    server = two["server_cpu_share"]["median"]
    used = server + two["worker_cpu_share"]["median"]
    if server >= 0.9:
        return f"the server is the limit ({server:.0%} of its one core)"
    return (
        f"the server and the workers use {used:.2f} of the {p['cores']} cores "
        f"(server {server:.0%} of one): on this machine they wait on each other for the cores"
    )


#: How the panel names the tracing ratios that have a target.
_SAMPLED = {"sdk-batch/off": "100 % sampled / off", "sdk-batch-10/off": "10 % sampled / off"}


def operations_figures(benchmarks: Iterable[Mapping[str, Any]]) -> list[Figure]:
    """Every operations ratio of the run: ``-p 2 / -p 1``, the tracing ratios that have a
    target, and the server cost per half against its floor."""
    out: list[Figure] = []
    for b in benchmarks:
        info = b["extra_info"]
        if p := info.get("processes"):
            out.append(Figure("consume -p 2 / -p 1 (jobs/s)", p["ratio_p2_p1"]["median"]))
        if t := info.get("tracing"):
            where = b.get("name", "").partition("[")[2].rstrip("]") or "tracing"
            for name, r in t["ratios"].items():
                if "target_at_least" in r:
                    label = f"traced, {_SAMPLED.get(name, name)} ({where})"
                    out.append(Figure(label, r["of_medians"], r["target_at_least"]))
        if cost := info.get("server_cost"):
            for half, h in cost["halves"].items():
                out.append(
                    Figure(
                        f"server CPU/job / floor: {half}",
                        h["ratio"]["median"],
                        cost["target_at_most"],
                        at_least=False,
                    )
                )
    return out


def plot_operations(ax: Any, figures: Sequence[Figure]) -> None:
    """The figures as horizontal bars, each with its target (a tick) and verdict."""
    ys = list(range(len(figures)))
    colors = ["C3" if f.verdict == "MISSED" else "C0" for f in figures]
    ax.barh(ys, [f.value for f in figures], color=colors)
    ax.set_yticks(ys, [f.label for f in figures], fontsize=7)
    ax.invert_yaxis()
    for y, f in zip(ys, figures, strict=True):
        note = f" {f.value:.2f}x"
        if f.target is not None:
            note += f"  (target {'>=' if f.at_least else '<='}{f.target:.2f}x {f.verdict})"
            ax.plot([f.target, f.target], [y - 0.4, y + 0.4], color="0.2", lw=1.5)
        ax.text(f.value, y, note, va="center", fontsize=7)
    ax.axvline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlim(0, max([f.value for f in figures] + [f.target or 0 for f in figures]) * 1.6)
    ax.set_xlabel(
        "ratio to the baseline of the same run (black tick: the target; red: missed)", fontsize=8
    )
    ax.set_title("operations: processes, tracing, server cost per job", fontsize=9)
