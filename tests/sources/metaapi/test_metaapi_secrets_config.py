"""The MetaAPI token never appears in any output of the source (a sentinel token, captured logs, reprs,
read failures, health errors, connection states), and bad configuration is one clear error.

Against a fake of the SDK's connection and listener interface (tests/sources/metaapi/fake_sdk.py): the
MetaAPI cloud cannot run here, and no test reaches it.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.domain.accounts import ReadFailure, Reason
from agent.sources.base import SourceError
from agent.sources.metaapi import Bounds, MetaApiConfigError, MetaApiSource, load_settings
from tests.sources.metaapi.fake_sdk import FakeCloud
from tests.sources.metaapi.support import FAST, make_source, token_file, wait_until

SENTINEL = "SENTINEL-metaapi-token-7f3a9c"
LOGIN = 51234567


async def test_no_secret_in_any_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = FakeCloud()
    # the cloud's errors echo the token back (as a careless server or SDK message might)
    cloud.add("acc-1", LOGIN, fail_connect=2, error_text=f"auth-token {SENTINEL} rejected")
    cloud.add("acc-2", 51234568, unknown=True)
    source = make_source(cloud, tmp_path, {str(LOGIN): "acc-1", "51234568": "acc-2"}, token=SENTINEL)
    outputs: list[str] = []
    try:
        with pytest.raises(MetaApiConfigError) as bad:
            await source.verify()
        outputs.append(str(bad.value))
        try:
            await source.health()
        except SourceError as exc:
            outputs.append(str(exc) + exc.message)
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized")
        assert cloud.apis[0].token == SENTINEL  # the token did reach the SDK (so the test means something)
        await wait_until(
            lambda: source.connection_states()[1].last_problem == "unknown_account", what="unknown account"
        )
        until = datetime.now(UTC)
        reads = [
            source.read_account(51234568),
            source.read_account(99),
            await source.read_positions(51234568),
            await source.read_deals(51234568, until - timedelta(days=1), until),
        ]
        assert all(isinstance(r, ReadFailure) for r in reads)
        assert reads[0].reason is Reason.NOT_FOUND  # type: ignore[union-attr]
        outputs += [repr(r) for r in reads]
        outputs += [repr(source), str(source), repr(source.connection_states()), repr(source.streams())]
        outputs.append(repr(await source.health()))
        settings = load_settings(token_file(tmp_path, SENTINEL), {"1": "acc-1"})
        outputs += [
            repr(settings),
            str(settings),
            str(settings.token),
            f"{settings.token}",
            repr(settings.token),
        ]
    finally:
        await source.close()
    captured = capsys.readouterr()
    outputs += [caplog.text, captured.out, captured.err]
    outputs += [r.getMessage() for r in caplog.records]
    assert any("rejected" in r.getMessage() for r in caplog.records)  # the failure was logged, scrubbed
    leaks = [o for o in outputs if SENTINEL in o]
    assert leaks == []


async def test_redact_callback_applies_to_logged_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN, fail_connect=1, error_text="password=hunter2 in the url")
    source = make_source(
        cloud, tmp_path, {str(LOGIN): "acc-1"}, redact=lambda text: text.replace("hunter2", "[redacted]")
    )
    try:
        source.start()
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized")
    finally:
        await source.close()
    assert "[redacted]" in caplog.text and "hunter2" not in caplog.text


def _one_line(exc: pytest.ExceptionInfo[MetaApiConfigError], *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 200
    for needle in needles:
        assert needle in text, text
    return text


def test_missing_token_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MetaApiConfigError) as exc:
        load_settings(tmp_path / "nope", {"1": "acc-1"})
    _one_line(exc, "metaapi.token_file", "does not exist")
    with pytest.raises(MetaApiConfigError) as exc:
        load_settings(None, {"1": "acc-1"})
    _one_line(exc, "metaapi.token_file", "not set")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(MetaApiConfigError) as exc:
        load_settings(empty, {"1": "acc-1"})
    _one_line(exc, "metaapi.token_file", "empty")
    two = tmp_path / "two"
    two.write_text(f"{SENTINEL} second-word\n")
    with pytest.raises(MetaApiConfigError) as exc:
        load_settings(two, {"1": "acc-1"})
    assert SENTINEL not in _one_line(exc, "metaapi.token_file", "one token")


@pytest.mark.parametrize(
    ("accounts", "needle"),
    [
        ({}, "metaapi.accounts: no login"),
        ({"abc": "acc-1"}, "metaapi.accounts: login 'abc'"),
        ({"0": "acc-1"}, "metaapi.accounts: login '0'"),
        ({"123": "has space"}, "metaapi.accounts.123: not a MetaAPI account id"),
        ({"123": 5}, "metaapi.accounts.123: not a MetaAPI account id"),
        ({"1": "acc-1", "2": "acc-1"}, "mapped to two logins"),
        ([("1", "acc-1")], "metaapi.accounts: no login"),
    ],
)
def test_bad_account_mapping_is_one_clear_error(tmp_path: Path, accounts: object, needle: str) -> None:
    with pytest.raises(MetaApiConfigError) as exc:
        load_settings(token_file(tmp_path), accounts)
    _one_line(exc, needle)


def test_bad_bounds_are_one_clear_error() -> None:
    with pytest.raises(MetaApiConfigError) as exc:
        Bounds(silence=-1)
    _one_line(exc, "metaapi.silence")
    with pytest.raises(MetaApiConfigError) as exc:
        Bounds(backoff_base=10, backoff_cap=1)
    _one_line(exc, "metaapi.backoff_base")


async def test_unknown_metaapi_account_fails_verify_naming_the_login(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN)
    source = make_source(cloud, tmp_path, {str(LOGIN): "acc-1", "777": "acc-gone"})
    try:
        with pytest.raises(MetaApiConfigError) as exc:
            await source.verify()
        _one_line(exc, "metaapi.accounts.777", "'acc-gone'", "does not exist")
    finally:
        await source.close()
    assert cloud.connections == {}  # verify opens no streaming connection


async def test_refused_token_fails_verify_naming_the_token_file(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN)
    cloud.refuse_tokens = True
    source = make_source(cloud, tmp_path, {str(LOGIN): "acc-1"})
    try:
        with pytest.raises(MetaApiConfigError) as exc:
            await source.verify()
        _one_line(exc, "metaapi.token_file", "refused")
    finally:
        await source.close()


@pytest.mark.skipif(
    importlib.util.find_spec("metaapi_cloud_sdk") is not None, reason="the extra is installed"
)
def test_missing_sdk_extra_is_one_clear_error(tmp_path: Path) -> None:
    settings = load_settings(token_file(tmp_path), {"1": "acc-1"}, FAST)
    with pytest.raises(MetaApiConfigError) as exc:
        MetaApiSource(settings)
    _one_line(exc, "metaapi-cloud-sdk", "mt5-monitor[metaapi]")
