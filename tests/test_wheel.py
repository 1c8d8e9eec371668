"""The wheel ships the agent, the bridge and the monitoring-as-code renderers, and no tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_no_tests(tmp_path: Path) -> None:
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
    (wheel,) = tmp_path.glob("mt5_monitor-*.whl")
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
