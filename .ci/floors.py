"""Print pip constraints pinning every runtime dependency of pyproject.toml to its declared floor.

``make test-floor`` installs streamq under these constraints in a venv of its own and runs the
contract suite there, so a floor in pyproject.toml is a version the code was run on, not a guess.
A dependency without a ``>=`` floor is an error: every runtime dependency must declare one.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# name[extras] (>=X | ==X) [, <Y] [; marker]
_SPEC = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r"(?P<ops>[^;]*?)\s*(?:;\s*(?P<marker>.*))?$"
)
_FLOOR = re.compile(r"(?:>=|==)\s*([0-9][A-Za-z0-9.+!-]*)")


def floors(pyproject: Path) -> list[str]:
    """``name==floor[; marker]`` for each runtime dependency (constraints take no extras)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        m = _SPEC.match(dep)
        floor = _FLOOR.search(m.group("ops")) if m else None
        if m is None or floor is None:
            raise SystemExit(f"floors: {dep!r} declares no >= floor")
        marker = f"; {m.group('marker')}" if m.group("marker") else ""
        out.append(f"{m.group('name')}=={floor.group(1)}{marker}")
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    print("\n".join(floors(root / "pyproject.toml")))
