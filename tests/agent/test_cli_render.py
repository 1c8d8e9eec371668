"""`mt5-agent render`: the committed files by default, render options for the job selector and the
runbook URL pattern, and a bad option as one line with exit 2."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _render(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "render", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("what", ["alerts", "dashboards"])
def test_render_defaults_reproduce_the_committed_files(tmp_path: Path, what: str) -> None:
    done = _render(what, out=tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted((tmp_path / what).iterdir())
    assert written
    for path in written:
        assert filecmp.cmp(path, ROOT / what / path.name, shallow=False), path.name


@pytest.mark.parametrize("what", ["alerts", "dashboards"])
def test_render_options_reach_every_file(tmp_path: Path, what: str) -> None:
    done = _render(
        what,
        "--job-selector",
        'job="mt5-prod", cluster="eu"',
        "--runbook-url",
        "https://runbooks.example.invalid/mt5/{anchor}",
        out=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    text = "".join(p.read_text() for p in (tmp_path / what).iterdir())
    assert 'job="mt5-agent"' not in text
    assert 'cluster=\\"eu\\"' in text or 'cluster="eu"' in text
    assert "https://runbooks.example.invalid/mt5/" in text


@pytest.mark.parametrize(
    "option",
    [("--job-selector", "up or vector(1)"), ("--runbook-url", "https://x.invalid/{nope}")],
    ids=["job-selector", "runbook-url"],
)
def test_a_bad_render_option_is_one_line_exit_2(tmp_path: Path, option: tuple[str, str]) -> None:
    done = _render("alerts", *option, out=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mt5-agent: render:"), done.stderr
    assert not (tmp_path / "alerts" / "rules.yml").exists()


def test_bridge_job_selector_reaches_the_bridge_dashboard_only(tmp_path: Path) -> None:
    done = _render("dashboards", "--bridge-job-selector", 'job="bridges", site="ldn"', out=tmp_path)
    assert done.returncode == 0, done.stderr
    bridge = (tmp_path / "dashboards" / "mt5-bridge.json").read_text()
    assert 'site=\\"ldn\\"' in bridge and 'job=\\"mt5-bridge\\"' not in bridge
    overview = (tmp_path / "dashboards" / "mt5-accounts-overview.json").read_text()
    assert "ldn" not in overview


def test_bridge_job_selector_is_refused_for_alerts(tmp_path: Path) -> None:
    done = _render("alerts", "--bridge-job-selector", 'job="bridges"', out=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "mt5-agent: render: --bridge-job-selector applies to dashboards only"
