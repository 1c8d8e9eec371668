"""README's examples stay true: every TOML block parses and names only settings that exist; the agent's
settings table lists every setting; the bridge's terminal file validates."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from agent.config import SECRET_FIELDS, Settings
from bridge.config import RealConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", README, flags=re.S)


def test_there_are_toml_examples() -> None:
    assert len(TOML_BLOCKS) >= 2


def test_agent_toml_example_names_only_real_settings() -> None:
    (agent_example,) = [b for b in TOML_BLOCKS if "bridge_url" in b]
    data = tomllib.loads(agent_example)
    assert set(data) <= set(Settings.model_fields)


def test_bridge_terminal_example_validates() -> None:
    (bridge_example,) = [b for b in TOML_BLOCKS if "[[accounts]]" in b]
    config = RealConfig.model_validate(tomllib.loads(bridge_example))
    assert config.accounts[0].password_file is not None and config.utc_offset_hours == 2


def test_settings_table_lists_every_setting() -> None:
    listed = set(re.findall(r"^\| (MT5_AGENT_[A-Z_]+)", README, flags=re.M))
    secret_files = {f"{name}_file" for name in SECRET_FIELDS}
    expected = {f"MT5_AGENT_{n.upper()}" for n in Settings.model_fields if n not in secret_files}
    assert expected <= listed, expected - listed


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_score_table_is_the_code_rules_table() -> None:
    """README's trade-score table names the rules of `RULES` with their max points, in order."""
    from agent.analytics.score import RULES

    rows = re.findall(r"^\| ([a-z_]+) \| (\d+) \|", _section("Trade score and risk"), flags=re.M)
    assert [(name, int(points)) for name, points in rows] == [(name, points) for name, points, _ in RULES]


def test_risk_section_names_only_catalog_metrics_and_rendered_alerts() -> None:
    from agent.domain.freshness import Thresholds
    from agent.telemetry import catalog
    from alerts.render import alert_names, rules

    text = _section("Trade score and risk")
    metrics = set(re.findall(r"`(mt5_[a-z_]+)", text))
    assert {f.series for f in catalog.RISK_FAMILIES} <= metrics
    assert metrics <= {f.series for f in catalog.FAMILIES}
    names = set(re.findall(r"\b(MT5[A-Za-z]+)\b", text))
    assert names == {"MT5AccountMarginLevelLow", "MT5AccountDrawdownHigh"}
    assert names <= set(alert_names(rules(Thresholds())))
    assert f"at most {catalog.RISK_SYMBOLS_PER_ACCOUNT} symbols" in text
