"""`[[sources]]` in the TOML file: several bridges and MetaAPI in one agent (issue 15, DESIGN.md section 10).

Bad configuration fails at load with one line naming the source and its key; MT5_AGENT_BRIDGE_URL alone
keeps meaning one bridge source named `bridge`; `mt5-agent settings` shows the sources, secrets masked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, describe_settings, load_settings, toml_keys

SECRET = "s3cret-bridge-token-value"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _token(tmp_path: Path, name: str = "token", value: str = SECRET) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    return path


def test_bridge_url_alone_is_one_bridge_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT5_AGENT_BRIDGE_URL", "http://127.0.0.1:8123")
    monkeypatch.setenv("MT5_AGENT_BRIDGE_TOKEN", SECRET)
    settings = load_settings()
    (only,) = settings.source_configs
    assert (only.name, only.kind, only.url) == ("bridge", "bridge", "http://127.0.0.1:8123")
    assert only.token is not None and only.token.get_secret_value() == SECRET
    assert settings.source_names == ("bridge",)


def test_two_bridges_and_a_metaapi_source(tmp_path: Path) -> None:
    token = _token(tmp_path)
    meta = _token(tmp_path, "meta", "meta-token-value")
    path = _toml(
        tmp_path,
        f"""
[agent]
schedule = "10s"

[[sources]]
name = "vps-a"
kind = "bridge"
url = "http://127.0.0.1:8001/"
token_file = "{token}"

[[sources]]
name = "vps-b"
kind = "bridge"
url = "http://127.0.0.1:8002"
use_batch = false

[[sources]]
name = "cloud"
kind = "metaapi"
token_file = "{meta}"
accounts = {{ "1001" = "abc-123" }}
bounds = {{ silence = 30 }}
""",
    )
    settings = load_settings(path)
    assert settings.schedule == "10s"
    a, b, cloud = settings.source_configs
    assert (a.name, a.url, b.name, b.use_batch) == ("vps-a", "http://127.0.0.1:8001", "vps-b", False)
    assert a.token is not None and a.token.get_secret_value() == SECRET and b.token is None
    assert cloud.kind == "metaapi" and dict(cloud.metaapi.accounts) == {1001: "abc-123"}
    assert cloud.metaapi.bounds.silence == 30
    assert set(settings.source_secrets()) == {SECRET, "meta-token-value"}
    lines = {line.toml_key: line for line in describe_settings(settings, toml_keys(path))}
    shown = lines["sources"].value
    assert "vps-a: bridge http://127.0.0.1:8001" in shown and "cloud: metaapi, 1 account(s)" in shown
    assert lines["sources"].source == "file"
    assert SECRET not in shown and "meta-token-value" not in shown and SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('name = "a"\nkind = "ftp"\nurl = "http://127.0.0.1:1"', "source 'a': unknown kind 'ftp'"),
        ('name = "A b"\nkind = "bridge"\nurl = "http://127.0.0.1:1"', "name 'A b' must match"),
        ('name = "a"\nkind = "bridge"', "source 'a': url is required"),
        ('name = "a"\nkind = "bridge"\nurl = "ftp://x"', "source 'a': url must be an http(s) URL"),
        ('name = "a"\nkind = "bridge"\nurl = "http://127.0.0.1:1"\ncolour = 1', "unknown key 'colour'"),
        (
            'name = "a"\nkind = "bridge"\nurl = "http://127.0.0.1:1"\ntoken_file = "/nonexistent/t"',
            "source 'a': token_file: cannot read /nonexistent/t",
        ),
        ('name = "m"\nkind = "metaapi"\naccounts = { "1" = "x" }', "source 'm': metaapi.token_file: not set"),
        (
            'name = "m"\nkind = "metaapi"\ntoken_file = "/nonexistent/t"\naccounts = { "1" = "x" }',
            "metaapi.token_file: file '/nonexistent/t' does not exist",
        ),
    ],
)
def test_bad_source_is_one_line_naming_it(tmp_path: Path, body: str, needle: str) -> None:
    path = _toml(tmp_path, f"[[sources]]\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"invalid setting sources in {path}: "), line
    assert needle in line, line


def test_duplicate_names_and_logins_are_refused(tmp_path: Path) -> None:
    url = 'kind = "bridge"\nurl = "http://127.0.0.1:1"'
    path = _toml(tmp_path, f'[[sources]]\nname = "a"\n{url}\n[[sources]]\nname = "a"\n{url}\n')
    with pytest.raises(ConfigError, match="source 'a': duplicate name"):
        load_settings(path)
    token = _token(tmp_path)
    meta = f'kind = "metaapi"\ntoken_file = "{token}"'
    path = _toml(
        tmp_path,
        f'[[sources]]\nname = "m1"\n{meta}\naccounts = {{ "7" = "id-1" }}\n'
        f'[[sources]]\nname = "m2"\n{meta}\naccounts = {{ "7" = "id-2" }}\n',
    )
    with pytest.raises(ConfigError, match="source 'm2': login 7 is also listed by source 'm1'"):
        load_settings(path)


def test_bridge_url_and_sources_together_are_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(tmp_path, '[[sources]]\nname = "a"\nkind = "bridge"\nurl = "http://127.0.0.1:1"\n')
    monkeypatch.setenv("MT5_AGENT_BRIDGE_URL", "http://127.0.0.1:2")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "both MT5_AGENT_BRIDGE_URL (bridge_url) and [[sources]] are set" in str(err.value)
    assert "\n" not in str(err.value)


def test_readme_sources_example_is_valid_apart_from_its_token_files(tmp_path: Path) -> None:
    """README's `[[sources]]` example parses into the settings once its token files exist."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, flags=re.S) if "[[sources]]" in b]
    for path in set(re.findall(r'token_file = "([^"]+)"', block)):
        block = block.replace(path, str(_token(tmp_path, Path(path).name)))
    settings = load_settings(_toml(tmp_path, block))
    assert settings.source_names == ("vps-london", "vps-ny", "cloud")
