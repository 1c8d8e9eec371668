"""Our MT5 enum values against the real `MetaTrader5` package (its wheel's __init__.py, read with ast):
the bridge's constants (bridge/terminal.py) and the fake module the adapter tests use."""

from __future__ import annotations

import bridge.terminal as terminal
from tests.bridge.mt5_package import enum_constants, real_constants
from tests.bridge.test_mt5_terminal import fake_mt5


def _ours(names: dict[str, object]) -> dict[str, int]:
    return enum_constants({k: v for k, v in names.items() if type(v) is int})


def test_bridge_constants_are_metaquotes_own() -> None:
    real = enum_constants(real_constants())
    ours = _ours(vars(terminal))
    assert ours == real, {
        k: (ours.get(k), real.get(k)) for k in ours.keys() | real.keys() if ours.get(k) != real.get(k)
    }


def test_result_codes_are_metaquotes_own() -> None:
    real = real_constants()
    for name in (
        "RES_S_OK",
        "RES_E_FAIL",
        "RES_E_AUTH_FAILED",
        "RES_E_INTERNAL_FAIL",
        "RES_E_INTERNAL_FAIL_CONNECT",
    ):
        assert getattr(terminal, name) == real[name], name
    assert real["RES_E_INTERNAL_FAIL_TIMEOUT"] == terminal.RES_E_INTERNAL_FAIL_TIMEOUT


def test_fake_module_agrees_with_the_real_package() -> None:
    real = enum_constants(real_constants())
    fake = _ours(vars(fake_mt5()))
    assert fake == real
