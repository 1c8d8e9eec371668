"""The store reads a run's closed-set fields by their type, so a field the domain adds (an Enum or a
Literal, e.g. why a run stopped) is stored as its value and read back checked, with no store change."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Literal

from agent.domain.runs import RunResult
from agent.store.codec import RUN_CLOSED_FIELDS, _closed_fields


class Stop(StrEnum):
    STORE = "store"
    SOURCE = "source"


class Plain(Enum):
    ONE = 1


@dataclass
class Example:
    stopped: Stop | None = None
    plain: Plain = Plain.ONE
    mode: Literal["batch", "per_account"] | None = None
    text: str | None = None
    either: int | str | None = None


def test_enum_and_literal_fields_are_found_by_their_type() -> None:
    assert _closed_fields(Example) == {
        "stopped": (frozenset({"store", "source"}), Stop),
        "plain": (frozenset({1}), Plain),
        "mode": (frozenset({"batch", "per_account"}), None),
    }


def test_the_run_fields_the_store_checks() -> None:
    assert RUN_CLOSED_FIELDS["result"] == (frozenset(r.value for r in RunResult), RunResult)
    assert "error" not in RUN_CLOSED_FIELDS and "run_id" not in RUN_CLOSED_FIELDS
