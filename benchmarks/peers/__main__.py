"""The peers side by side: the same no-op workload through each library, one server, one run.

    python -m benchmarks.peers [--rounds 3] [--jobs 20000] [--concurrency 32] [--uvloop]
        [--peers streamq,streaq,...] [--save NAME] [--markdown]

One ``PrivateServer`` (append-only off, 127.0.0.1) for the whole run. Per round, the peers go in
a rotated order (round r starts r places further along), and for each peer:

1. FLUSHALL;
2. enqueue ``--jobs`` no-op jobs in a subprocess (timed inside it, set-up excluded), then check
   the library's own count of queued jobs;
3. drain them with one worker in another subprocess (timed inside it from the worker's start to
   the last handler run), reading the server's CPU time (INFO cpu) before and after;
4. after that worker has stopped, check the library's own count of what is left (queued, in
   flight): anything left, or fewer handler runs than jobs, marks the round as failed.

Results are medians over the rounds (failed rounds excluded and reported). The table goes to
stdout; the JSON to ``benchmarks/results/peers-latest.json`` and, with ``--save NAME``, to
``benchmarks/results/peers-NAME.json`` as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

from benchmarks.peers._child import PEERS, adapter, quiet_logs
from streamq._server import PrivateServer, find_binary

RESULTS = Path(__file__).resolve().parent.parent / "results"
DISTS = (
    "streamq",
    "streaq",
    "coredis",
    "anyio",
    "taskiq",
    "taskiq-redis",
    "saq",
    "arq",
    "redis",
    "hiredis",
    "uvloop",
    "structlog",
    "msgspec",
    "orjson",
)
#: A child that outlives its own drain timeout by this much is killed.
CHILD_GRACE_S = 60.0
#: The tail of a child's stderr kept (JSON) or shown (when the phase failed).
STDERR_KEPT = 4000


def _child(phase: str, peer: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.peers._child", phase, peer, url]
    cmd += ["--jobs", str(args.jobs), "--concurrency", str(args.concurrency)]
    cmd += ["--timeout", str(args.timeout)]
    if args.uvloop:
        cmd.append("--uvloop")
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout + CHILD_GRACE_S
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        print(err[-STDERR_KEPT:], file=sys.stderr)
        return {"error": f"{phase} did not return within {args.timeout + CHILD_GRACE_S:.0f} s"}
    if done.returncode != 0 or not done.stdout.strip():
        print(done.stderr[-STDERR_KEPT:], file=sys.stderr)
        return {"error": f"{phase} exited with {done.returncode} (its stderr is above)"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if done.stderr.strip():  # warnings of a phase that worked: kept in the JSON, not printed
        result["stderr"] = done.stderr[-STDERR_KEPT:]
    return result


def _leftover(peer: str, url: str) -> dict[str, int]:
    mod, _ = adapter(peer)
    counts: dict[str, int] = asyncio.run(mod.leftover(url))
    return counts


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class _Machine:
    """CPU time of the whole machine, of this process and of its reaped children, from now on.

    What the rest of the machine (anything but the driver, its children and the server) used
    while a drain ran tells whether the figures were measured on a quiet machine; the 1-minute
    load average cannot, since it counts the previous library's worker and server too.
    """

    def __init__(self) -> None:
        self.busy, self.own = self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        """Busy seconds of all CPUs: user, nice, system, irq, softirq.

        Interrupt work is in: the kernel also charges it to the process that was running, and
        the loopback traffic between worker and server is most of it.
        """
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:8]]
        user, nice, system, _idle, _iowait, irq, softirq = fields
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        me, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def others_share(self, server_cpu_s: float, wall_s: float) -> float | None:
        """Share of the machine's CPU capacity used by other processes since ``__init__``."""
        if not os.path.exists("/proc/stat") or wall_s <= 0:
            return None
        others = (self._busy() - self.busy) - (self._own() - self.own) - server_cpu_s
        return others / (wall_s * len(os.sched_getaffinity(0)))


def _one(peer: str, url: str, client: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    """One peer, one round: enqueue, check, drain, check."""
    client.flushall()
    out: dict[str, Any] = {"peer": peer, "loadavg_1min": os.getloadavg()[0], "problems": []}
    problems: list[str] = out["problems"]
    out["enqueue"] = enq = _child("enqueue", peer, url, args)
    if "error" in enq:
        problems.append(enq["error"])
        return out
    out["after_enqueue"] = queued = _leftover(peer, url)
    if queued.get("queued") != args.jobs:
        problems.append(f"{queued.get('queued')} jobs queued after enqueueing {args.jobs}")
    cpu0, machine0, t0 = _server_cpu(client), _Machine(), time.monotonic()
    out["drain"] = drain = _child("drain", peer, url, args)
    out["server_cpu_s"] = server_cpu = _server_cpu(client) - cpu0
    out["others_cpu_share"] = machine0.others_share(server_cpu, time.monotonic() - t0)
    out["after_drain"] = left = _leftover(peer, url)
    if "error" in drain:
        problems.append(drain["error"])
    elif not drain["reached"]:
        problems.append(f"only {drain['handled']} of {args.jobs} handlers ran within the timeout")
    remaining = {k: v for k, v in left.items() if not k.startswith("info_") and v}
    if remaining:
        problems.append(f"left after the worker stopped: {remaining}")
    if drain.get("handled", 0) > args.jobs:
        out["duplicates"] = drain["handled"] - args.jobs
    if drain.get("stop_hung"):
        out["notes"] = ["graceful stop hung after the drain; the pool was closed under it"]
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(peer: str, rounds: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    """Medians over the rounds that completed; failed rounds are counted, not averaged in."""
    ok = [r for r in rounds if not r["problems"]]
    enq = _median([r["enqueue"]["seconds"] for r in ok])
    drain = _median([r["drain"]["seconds"] for r in ok])
    cpu = _median([r["drain"]["cpu_s"] for r in ok])
    server = _median([r["server_cpu_s"] for r in ok])
    enq_cpu = _median([r["enqueue"]["cpu_s"] for r in ok])
    return {
        "peer": peer,
        "rounds": len(rounds),
        "rounds_ok": len(ok),
        "problems": sorted({p for r in rounds for p in r["problems"]}),
        "duplicates": sum(r.get("duplicates", 0) for r in rounds),
        "notes": sorted({n for r in rounds for n in r.get("notes", [])}),
        "others_cpu_share_max": max(
            (r["others_cpu_share"] for r in rounds if r.get("others_cpu_share") is not None),
            default=None,
        ),
        "enqueue_per_s": jobs / enq if enq else None,
        "drain_per_s": jobs / drain if drain else None,
        "worker_cpu_us_per_job": cpu / jobs * 1e6 if cpu is not None else None,
        "enqueue_cpu_us_per_job": enq_cpu / jobs * 1e6 if enq_cpu is not None else None,
        "server_cpu_us_per_job": server / jobs * 1e6 if server is not None else None,
        "drain_rates": [jobs / r["drain"]["seconds"] for r in ok],
        "enqueue_rates": [jobs / r["enqueue"]["seconds"] for r in ok],
    }


def add_ratios(summary: dict[str, dict[str, Any]]) -> None:
    """Each peer's median rates over streamq's (None without a streamq figure)."""
    base = summary.get("streamq", {})
    for s in summary.values():
        for what in ("drain", "enqueue"):
            rate, own = base.get(f"{what}_per_s"), s.get(f"{what}_per_s")
            s[f"{what}_vs_streamq"] = own / rate if own and rate else None


def _k(rate: float | None) -> str:
    return "-" if rate is None else f"{rate / 1000:.1f}k" if rate >= 1000 else f"{rate:.0f}"


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(summary: dict[str, dict[str, Any]], *, markdown: bool) -> list[str]:
    head = [
        "library",
        "enqueue jobs/s",
        "drain jobs/s",
        "worker CPU µs/job",
        "server CPU µs/job",
        "drain vs streamq",
        "enqueue vs streamq",
        "status",
    ]
    rows = []
    for s in summary.values():
        status = "ok" if s["rounds_ok"] == s["rounds"] else f"FAILED {s['rounds'] - s['rounds_ok']}"
        if s["duplicates"]:
            status += f", {s['duplicates']} duplicate runs in {s['rounds']} rounds"
        rows.append(
            [
                s["peer"],
                _k(s["enqueue_per_s"]),
                _k(s["drain_per_s"]),
                _f(s["worker_cpu_us_per_job"], ".0f"),
                _f(s["server_cpu_us_per_job"], ".0f"),
                _f(s["drain_vs_streamq"], ".3f") + ("x" if s["drain_vs_streamq"] else ""),
                _f(s["enqueue_vs_streamq"], ".3f") + ("x" if s["enqueue_vs_streamq"] else ""),
                status,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i in (0, 7) else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*head), *(fmt.format(*r) for r in rows)]


def _streamq_commit() -> str:
    """The commit the streamq engine was measured at, ``+dirty`` with uncommitted changes."""
    repo = Path(__file__).resolve().parents[2]

    def git(*cmd: str) -> str:
        run = subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True, text=True)
        return run.stdout.strip()

    dirty = git("status", "--porcelain", "--", "streamq", "handlers")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def machine_info(server_url: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    versions = {}
    for dist in DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions["python"] = platform.python_version()
    server = redis.Redis.from_url(server_url).info("server")
    binary = subprocess.run([find_binary(), "--version"], capture_output=True, text=True)
    return {
        "streamq_commit": _streamq_commit(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "versions": versions,
        "server": {
            "version": server.get("valkey_version") or server.get("redis_version"),
            "binary": binary.stdout.strip(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--uvloop", action="store_true", help="every library's loop is uvloop")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=300.0, help="per drain, seconds")
    parser.add_argument("--save", metavar="NAME", help="also write results/peers-NAME.json")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args(argv)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := [p for p in peers if p not in PEERS]:
        parser.error(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    quiet_logs()
    load_at_start = os.getloadavg()
    started = datetime.now(UTC)
    loop = "uvloop" if args.uvloop else "asyncio"
    print(
        f"{args.jobs} no-op jobs per library, one worker at concurrency {args.concurrency}, "
        f"{loop} loop, {args.rounds} rounds; 1-min load {load_at_start[0]:.2f}"
    )

    with (
        tempfile.TemporaryDirectory(prefix="streamq-peers-") as tmp,
        PrivateServer(Path(tmp), appendonly=False) as server,
    ):
        info = machine_info(server.url)
        info["loadavg_at_start"] = load_at_start
        client = redis.Redis.from_url(server.url)
        results: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
        orders = []
        for r in range(args.rounds):
            order = peers[r % len(peers) :] + peers[: r % len(peers)]
            orders.append(order)
            for peer in order:
                t0 = time.monotonic()
                one = _one(peer, server.url, client, args)
                results[peer].append(one)
                rate = one.get("drain", {}).get("seconds")
                done = f"{args.jobs / rate:,.0f} jobs/s" if rate and not one["problems"] else ""
                took = f"({time.monotonic() - t0:.0f} s)"
                what = "; ".join(one["problems"])
                print(
                    f"round {r + 1}/{args.rounds} {peer:<13} {done:>14} {took} {what}", flush=True
                )
        client.flushall()
        client.close()

    summary = {p: summarize(p, results[p], args.jobs) for p in peers}
    loads = [r["loadavg_1min"] for rounds in results.values() for r in rounds]
    others = [s["others_cpu_share_max"] for s in summary.values()]
    others = [x for x in others if x is not None]
    add_ratios(summary)
    print()
    for line in table(summary, markdown=args.markdown):
        print(line)
    print(
        f"\n1-min load average at the start: {load_at_start[0]:.2f}, before each library's "
        f"rounds {min(loads):.2f}-{max(loads):.2f} ({info['nproc']} CPUs); server "
        f"{info['server']['version']}; streamq at {info['streamq_commit']}"
    )
    if others:
        print(
            f"CPU used by other processes during the drains: at most {max(others):.1%} of the "
            "machine (the 1-min load above counts this benchmark's own worker and server)"
        )
    for s in summary.values():
        for problem in s["problems"] + s["notes"]:
            print(f"{s['peer']}: {problem}")

    doc = {
        "created": started.isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks.peers", *(sys.argv[1:] if argv is None else argv)],
        "settings": {
            "jobs": args.jobs,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "loop": loop,
            "orders": orders,
        },
        "machine_info": info,
        "summary": summary,
        "rounds": results,
    }
    RESULTS.mkdir(exist_ok=True)
    paths = [RESULTS / "peers-latest.json"]
    if args.save:
        paths.append(RESULTS / f"peers-{args.save}.json")
    for path in paths:
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return 0 if all(s["rounds_ok"] == s["rounds"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
