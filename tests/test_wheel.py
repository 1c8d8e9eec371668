"""The wheel ships the agent, the bridge and the monitoring-as-code renderers, and no tests; installed
into a fresh virtual environment (runtime dependencies only), both commands run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("wheel")
    # From a copy of the tracked files: a stale build/ or egg-info in the checkout cannot leak in.
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (found,) = tmp_path.glob("mt5_monitor-*.whl")
    return found


def test_the_wheel_ships_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.startswith("mt5_monitor-")}
    assert packages == {"agent", "bridge", "alerts", "dashboards"}
    test_files = [
        n
        for n in names
        if "/tests/" in n or Path(n).name.startswith(("test_", "conftest")) or n.endswith("tests.yml")
    ]
    assert test_files == []
    assert "alerts/rules.yml" in names and "agent/api/static/index.html" in names
    assert "agent/py.typed" in names  # type hints are part of what the agent package offers


def test_the_installed_wheel_runs_both_commands(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    for command, name in (("mt5-agent", "mt5-agent"), ("mt5-bridge", "mt5-bridge")):
        done = subprocess.run(
            [str(venv / "bin" / command), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{name} 0.1.0"
    # Runtime only: render says which extra it needs, in one line, instead of a traceback.
    out = tmp_path / "out"
    done = subprocess.run(
        [str(venv / "bin" / "mt5-agent"), "render", "alerts", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "mt5-monitor[render]" in done.stderr and "Traceback" not in done.stderr
