"""The domain's MT5 enums (agent/domain/trades.py) against the real `MetaTrader5` package: same names,
same values, none missing, so what a terminal reports needs no translation."""

from __future__ import annotations

from enum import IntEnum

import pytest

from agent.domain.trades import DealEntry, DealReason, DealType, PositionReason, PositionType
from tests.bridge.mt5_package import DEAL_TYPE_SHORT_NAMES, real_constants

ENUMS: list[tuple[type[IntEnum], str]] = [
    (PositionType, "POSITION_TYPE_"),
    (PositionReason, "POSITION_REASON_"),
    (DealType, "DEAL_TYPE_"),
    (DealEntry, "DEAL_ENTRY_"),
    (DealReason, "DEAL_REASON_"),
]


def _package_name(prefix: str, member: str) -> str:
    name = prefix + member
    if prefix == "DEAL_TYPE_" and f"DEAL_{member}" in DEAL_TYPE_SHORT_NAMES:
        return f"DEAL_{member}"  # the package drops TYPE_ from these
    return name


@pytest.mark.parametrize(("enum", "prefix"), ENUMS, ids=[e.__name__ for e, _ in ENUMS])
def test_domain_enum_is_metaquotes_own(enum: type[IntEnum], prefix: str) -> None:
    real = real_constants()
    ours = {_package_name(prefix, m.name): m.value for m in enum}
    theirs = {k: v for k, v in real.items() if k.startswith(prefix)}
    if prefix == "DEAL_TYPE_":
        theirs |= {k: real[k] for k in DEAL_TYPE_SHORT_NAMES}
    assert ours == theirs
