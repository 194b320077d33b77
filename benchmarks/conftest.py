"""Fixtures for the BENCHMARKS (pytest-benchmark). These are not tests.

Nothing here asserts a timing: the suites measure, ``make bench`` reports. They are collected
only when asked for (``pytest benchmarks --benchmark-enable --benchmark-only``, which is what
``make bench`` runs); ``make test`` looks in ``tests/`` only, and the project's ``addopts`` carry
``--benchmark-skip`` so that even an explicit ``pytest benchmarks`` skips them.

Every async benchmark runs on an event loop made for it (``loop``) and drives it with
``loop.run_until_complete`` from pytest-benchmark's synchronous timer, the same way for streamq
and for its raw redis-py baseline, so the two figures of a group pay the same harness costs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
import structlog

import handlers
from benchmarks import summarize
from streamq import Queue
from streamq._server import PrivateServer, find_binary
from streamq.backends.redis import RedisBackend
from streamq.exceptions import ServerError


@pytest.fixture(scope="session", autouse=True)
def _structlog_at_warning() -> Iterator[None]:
    """The worker logs twice per job at debug: filter below WARNING, as a production app would.

    ``cache_logger_on_first_use`` is structlog's production advice; without it every
    ``logger.debug`` call rebuilds a bound logger (see benchmarks/README.md for what that costs).
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    """One throwaway server (no persistence) on 127.0.0.1 for the whole benchmark session."""
    with PrivateServer(tmp_path_factory.mktemp("bench-server"), appendonly=False) as srv:
        yield srv


@pytest.fixture
def prefix() -> str:
    """A key prefix of this benchmark's own: no benchmark sees another's streams."""
    return "bench" + uuid4().hex[:10]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for one benchmark, closed after it."""
    ev = asyncio.new_event_loop()
    yield ev
    ev.run_until_complete(ev.shutdown_asyncgens())
    ev.close()


@pytest.fixture
def raw(server: PrivateServer, loop: asyncio.AbstractEventLoop) -> Iterator[aioredis.Redis]:
    """A plain redis-py asyncio client (hiredis parser, bytes replies): the baselines' client.

    At teardown it empties the database, so no benchmark's streams weigh on the next one.
    """
    client = aioredis.Redis.from_url(server.url)
    yield client

    async def close() -> None:
        await client.flushdb()
        await client.aclose()

    loop.run_until_complete(close())


@pytest.fixture
def backend(
    server: PrivateServer, prefix: str, loop: asyncio.AbstractEventLoop, raw: aioredis.Redis
) -> Iterator[RedisBackend]:
    """streamq's Redis backend on the benchmark's server, under the benchmark's prefix.

    It asks for ``raw`` only so that it closes before ``raw`` empties the database.
    """
    be = RedisBackend(server.url, prefix=prefix)
    yield be
    loop.run_until_complete(be.aclose())


@pytest.fixture
def queue(backend: RedisBackend) -> Queue:
    """A producer as an application builds it: args are checked against the registry."""
    return Queue(backend, registry=handlers.registry)


# The ratio table -------------------------------------------------------------------------------

#: The 1-minute load average when the session started: on a shared 2-core machine another
#: process's test run skews the figures, and the summary says so above BUSY_LOAD.
_LOAD_AT_START = os.getloadavg()[0]
BUSY_LOAD = 0.3


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """Record how busy the machine was and the versions that matter, with the figures."""
    machine_info["loadavg_1min_at_start"] = _LOAD_AT_START
    machine_info["streamq_versions"] = _versions()


def _versions() -> dict[str, str]:
    out = {}
    dists = ("streamq", "redis", "hiredis", "msgspec", "orjson", "pydantic", "structlog")
    for dist in (*dists, "opentelemetry-api", "opentelemetry-sdk"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        done = subprocess.run(
            [find_binary(), "--version"], capture_output=True, text=True, timeout=10, check=True
        )
        out["server"] = done.stdout.strip()
    except (OSError, subprocess.SubprocessError, ServerError) as exc:
        out["server"] = f"unknown ({exc})"
    return out


def _results(config: pytest.Config) -> list[dict[str, Any]]:
    session = getattr(config, "_benchmarksession", None)  # pytest-benchmark's own session
    if session is None:
        return []
    return [b.as_dict(include_data=False) for b in session.benchmarks if b]


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Store the ratio table in the results JSON too, next to pytest-benchmark's figures."""
    results = _results(config)
    output_json["streamq_summary"] = [
        {
            "group": r.group,
            "name": r.name,
            "rate_per_s": r.rate,
            "unit": r.unit,
            "reference": r.is_reference,
            "ratio_to_reference": r.ratio,
            "target": r.target,
        }
        for r in summarize.rows(results)
    ]
    output_json["streamq_latency"] = [
        {
            "group": r.group,
            "name": r.name,
            "p50_us": r.p50,
            "p99_us": r.p99,
            "max_us": r.max,
            "reference": r.is_reference,
            "p50_ratio_to_reference": r.ratio_p50,
            "p99_ratio_to_reference": r.ratio_p99,
            "target_p50_at_most": r.target_p50_at_most,
        }
        for r in summarize.latency_rows(results)
    ]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """After pytest-benchmark's table: each streamq figure beside its baseline (rates and ratios,
    latency percentiles, recovery times); with ``--benchmark-json``, the chart beside the JSON."""
    results = _results(config)
    if not results:
        return
    for title, lines in summarize.sections(results):
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
    json_path = config.getoption("benchmark_json", None)
    if json_path is not None:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        title = summarize.chart_title(when, _LOAD_AT_START)
        written = summarize.write_chart(results, summarize.chart_path(Path(json_path)), title=title)
        if written is not None:
            terminalreporter.write_line(f"chart: {written}")
    terminalreporter.write_line(
        f"1-min load average when the run started: {_LOAD_AT_START:.2f} ({os.cpu_count()} CPUs)"
    )
    if _LOAD_AT_START > BUSY_LOAD:
        terminalreporter.write_line(
            "the machine was busy when this run started: rerun on an idle machine before "
            "comparing these figures with others",
            yellow=True,
        )
