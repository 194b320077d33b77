"""The built wheel: what it installs, and that an installed streamq runs its demo.

The wheel is built from this checkout (``pip wheel``) and installed without dependencies into a
throwaway venv that borrows the dependencies of the running one through a ``.pth`` line (the
registry is not needed, and the run stays well under a minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, fail the test with its output if it fails; its stdout and stderr."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout."""
    # From a copy of what the build reads: setuptools leaves build/ and *.egg-info behind.
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("streamq", "handlers"):
        shutil.copytree(ROOT / name, src / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", src, "-w", out, cwd=out)
    (found,) = out.glob("streamq-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed (its bin folder); dependencies from the running venv."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    purelib = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv
        ).strip()
    )
    # After the venv's own site-packages: its streamq is the wheel's, never this checkout's.
    (purelib / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=venv,
    )
    return venv / "bin"


def test_wheel_has_every_package_and_no_top_level_handlers(wheel: Path) -> None:
    """The wheel holds every package of streamq/ and the demo's handlers as
    streamq._demo_handlers, and no top-level ``handlers`` that would shadow an application's."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert tops == {"streamq"}
    packages = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("__init__.py")}
    in_tree = {
        str(p.parent.relative_to(ROOT)).replace("/", ".")
        for p in (ROOT / "streamq").rglob("__init__.py")
    }
    assert packages == in_tree | {"streamq._demo_handlers"}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(declared["packages"]) == packages
    assert "streamq/_demo_handlers/launch.py" in names


def test_installed_streamq_runs_its_demo(installed: Path, embedded_state: Path) -> None:
    """An installed wheel's ``streamq demo`` runs the launch jobs end to end on an embedded
    server, from a folder with no handlers package in it."""
    env = os.environ | {"STREAMQ_STATE_DIR": str(embedded_state)}
    for name in ("STREAMQ_REDIS_URL", "STREAMQ_HANDLERS", "PYTHONPATH"):
        env.pop(name, None)
    out = run(
        installed / "streamq", "demo", "--jobs", "5", "--failing", "1", cwd=embedded_state, env=env
    )
    assert "enqueued 5 launch jobs and 1 noop jobs that always fail" in out
    assert "dead noop" in out
    where = run(
        installed / "python",
        "-c",
        "import streamq; print(streamq.__file__)",
        cwd=embedded_state,
        env=env,
    )
    assert str(installed.parent) in where  # the wheel's streamq, not this checkout's


def test_installed_consume_takes_the_applications_handlers(
    installed: Path, tmp_path: Path, redis_url: str, prefix: str
) -> None:
    """Installed, ``--handlers handlers`` is the application's own package (from the folder it
    runs in), never the demo's: the demo's ``launch`` is unknown there."""
    app = tmp_path / "app"
    (app / "handlers").mkdir(parents=True)
    (app / "handlers" / "__init__.py").write_text(
        "from dataclasses import dataclass\n"
        "from streamq import JobType, Registry\n\n"
        "@dataclass(frozen=True)\nclass Args:\n    n: int = 0\n\n"
        "def run(job):\n    pass\n\n"
        "registry = Registry([JobType(name='mine', args=Args, steps=(run,))])\n"
    )
    env = os.environ | {"STREAMQ_REDIS_URL": redis_url, "STREAMQ_PREFIX": prefix}
    for name in ("STREAMQ_HANDLERS", "PYTHONPATH"):
        env.pop(name, None)
    streamq = installed / "streamq"
    run(
        streamq, "enqueue", "mine", "--args", '{"n": 1}', "--handlers", "handlers", cwd=app, env=env
    )
    demo_type = subprocess.run(
        [str(streamq), "enqueue", "launch", "--args", "{}", "--handlers", "handlers"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo_type.returncode == 2, demo_type.stderr
    assert "no handler registered for launch in module 'handlers'" in demo_type.stderr
    elsewhere = subprocess.run(
        [str(installed / "python"), "-c", "import handlers"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert elsewhere.returncode == 1
    assert "No module named 'handlers'" in elsewhere.stderr
