"""The import direction of docs/architecture.md, read from the source: each layer imports only
the layers below it, and each third-party library is imported where the page says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "streamq"

#: The layers, lowest first; a module may import its own layer and those before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "exceptions",
            "_job",
            "_urls",
            "backends",
            "backends._records",
            "backends._base",
            "backends._partitions",
            "backends._flow_base",
            "backends._control_base",
            "backends._priority",
        ),
    ),
    (
        "backends",
        (
            "backends.memory",
            "backends._memory_stream",
            "backends._memory_inspect",
            "backends._memory_schedule",
            "backends._memory_progress",
            "backends._memory_cancel",
            "backends._memory_flow",
            "backends._memory_levels",
            "backends.redis",
        ),
    ),
    (
        "engine",
        (
            "_codec",
            "_context",
            "_enqueue",
            "_tracing",
            "_otel_setup",
            "_logging",
            "_registry",
            "_schedules",
            "_worker",
            "_server",
            "_eventloop",
            "_flow",
        ),
    ),
    (
        "api",
        ("__init__", "_settings", "_producer", "_job_state", "_inspect", "_sync", "testing"),
    ),
    ("views", ("_views", "_views_job", "_demo")),
    ("front", ("_cli", "_web", "__main__")),
]

#: Where each third-party library may be imported (module name prefixes under streamq).
LIBRARIES = {
    "redis": ("backends.redis",),
    "hiredis": ("backends.redis",),
    "typer": ("_cli",),
    "rich": ("_cli",),
    "starlette": ("_web",),
    "uvicorn": ("_web",),
    # _tracing: the hot path (API only); _otel_setup: the CLI's SDK and exporters.
    "opentelemetry": ("_tracing", "_otel_setup"),
    # consume --metrics-port: the exporter's reader and prometheus-client's HTTP server.
    "prometheus_client": ("_otel_setup",),
    "msgspec": ("_codec",),
    "cronsim": ("_schedules",),
    "orjson": ("_codec", "_flow", "backends.redis._partitions"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best, found = -1, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found >= 0, f"streamq.{module} is in no layer of this test (add it)"
    return found


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, lazy imports inside functions included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            if node.module == "streamq":
                out |= {f"streamq.{alias.name}" for alias in node.names}
    return out


MODULES = sorted(ROOT.rglob("*.py"))
BACKENDS = [name for name, _ in LAYERS].index("backends")
ENGINE = [name for name, _ in LAYERS].index("engine")


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(p) for p in MODULES])
def test_imports_flow_one_way(path: Path) -> None:
    """A module imports nothing from a layer above its own, the engine no backend, and the
    dashboard never the CLI."""
    me = _module_name(path)
    mine = _layer(me)
    for name in _imports(path):
        if name.startswith("streamq."):
            other = name.removeprefix("streamq.")
            if other in {m for m in (_module_name(p) for p in MODULES)} or "." in other:
                assert _layer(other) <= mine, f"streamq.{me} imports {name}, a layer above it"
            if me.startswith("_web"):
                assert not other.startswith("_cli"), f"streamq.{me} imports the CLI ({name})"
            if me.startswith("backends"):
                assert _layer(other) <= BACKENDS, f"streamq.{me} imports {name}"
            if mine == ENGINE:
                # The engine sees the Backend protocol only, never a backend's module.
                assert _layer(other) != BACKENDS, f"streamq.{me} imports {name}, a backend"


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(p) for p in MODULES])
def test_libraries_are_imported_where_the_page_says(path: Path) -> None:
    """redis only under the Redis backend, typer only in the CLI, and so on."""
    me = _module_name(path)
    for name in _imports(path):
        top = name.split(".")[0]
        allowed = LIBRARIES.get(top)
        if allowed is not None:
            assert any(me == a or me.startswith(a + ".") for a in allowed), (
                f"streamq.{me} imports {name}"
            )
