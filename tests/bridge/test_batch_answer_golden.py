"""The bridge's answers, byte for byte, on a static simulated pool: the batch read's faster paths (the
response assembled from pre-encoded pieces, cached simulator values, cheaper instrumentation) must not
change a single byte of what clients receive.

The golden file was written by the code before those changes (`REGEN_GOLDEN=1` rewrites it: only do that
for an intended change of the answers, and say so). Only the top-level `timestamp` of the batch answers,
the wall clock of the request, is masked.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bridge.config import AccountEntry
from bridge.pool import TerminalPool
from bridge.simulated import SERVER, SimulatedTerminal, demo_accounts
from bridge.terminal import AccountInfo

GOLDEN = Path(__file__).parent / "golden" / "batch_answers.json"
NOW = 1_796_000_000.0  # a fixed instant at which several demo accounts hold positions
MASK = re.compile(r'^\{"timestamp": "[^"]*", ')
MASKED = '{"timestamp": "<now>", '


class OddTerminal(SimulatedTerminal):
    """A simulated terminal whose account data has what the simulator never makes: non-finite numbers,
    negative zero, a huge leverage and names needing JSON escapes."""

    def account_info(self) -> AccountInfo | None:
        info = super().account_info()
        if info is None:
            return None
        odd: dict[str, Any] = {
            2_000_001: dict(equity=math.nan, margin_level=math.inf, profit=-0.0),
            2_000_002: dict(balance=-math.inf, leverage=2**62, margin_free=1e300, margin=5e-324),
        }.get(info.login, {})
        return info._replace(**odd)


def _entry(login: int, name: str, balance: float, currency: str = "USD") -> AccountEntry:
    return AccountEntry(
        login=login, password=SecretStr(f"pw-{login}"), name=name, server=SERVER, balance=balance,
        currency=currency,
    )  # fmt: skip


def golden_pool() -> TerminalPool:
    clock = lambda: NOW  # noqa: E731
    demo = demo_accounts()
    sim_a = SimulatedTerminal(
        demo[:4], name="sim-a", static=True, clock=clock, utc_offset_hours=2.0,
        faults={demo[1].login: "no_live_data"},
    )  # fmt: skip
    sim_b = SimulatedTerminal(
        demo[4:], name="sim-b", static=True, clock=clock, utc_offset_hours=-3.5,
        faults={demo[5].login: "wrong_account"},
    )  # fmt: skip
    odd_entries = [
        _entry(2_000_001, 'Zoë "quoted" \\ back\tslash ✓ 𝄞', 12_345.67, "EUR"),
        _entry(2_000_002, "</script><script>alert(1)</script>", 0.0),
        _entry(2_000_003, "Login refused", 500.0),
        _entry(2_000_004, "Cut off", 750.0),
    ]
    odd = OddTerminal(
        odd_entries, name="sim-odd", static=True, clock=clock,
        faults={2_000_003: "login_failed", 2_000_004: "disconnected"},
    )  # fmt: skip
    return TerminalPool([(t, [e.credentials() for e in t._entries.values()]) for t in (sim_a, sim_b, odd)])


PATHS = [
    "/api/mt5/accounts/live",  # first: no stored data yet
    "/api/mt5/accounts/live",  # second: stored data from the first
    "/api/mt5/accounts/live?accounts=886066,2000001,999,886557,2000001",  # unknown and repeated ids
    "/api/mt5/accounts/positions",
    "/api/mt5/accounts/summary",
    "/api/mt5/account/886557/info",
    "/api/mt5/account/2000002/info",
    "/api/mt5/account/886066/info",
]


async def _answers(make_bridge: Any) -> dict[str, Any]:
    bridge = await make_bridge(golden_pool())
    out: dict[str, Any] = {}
    for i, path in enumerate(PATHS):
        async with bridge.client.get(path, headers={"Authorization": f"Bearer {bridge.token}"}) as r:
            body = (await r.read()).decode("utf-8")
            out[f"{i} {path}"] = {
                "status": r.status,
                "content_type": r.headers["Content-Type"],
                "body": MASK.sub(MASKED, body, count=1),
            }
    return out


async def test_answers_are_byte_identical_to_the_golden_file(make_bridge: Any) -> None:
    answers = await _answers(make_bridge)
    if os.environ.get("REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert list(answers) == list(golden)
    for key, want in golden.items():
        got = answers[key]
        assert got["status"] == want["status"], key
        assert got["content_type"] == want["content_type"], key
        if got["body"] != want["body"]:
            at = next(i for i, (a, b) in enumerate(zip(got["body"], want["body"], strict=False)) if a != b)
            raise AssertionError(
                f"{key}: bodies differ at byte {at}: {got['body'][at - 80 : at + 80]!r} "
                f"vs golden {want['body'][at - 80 : at + 80]!r}"
            )


def test_golden_file_covers_what_it_must() -> None:
    """The golden answers exercise every shape the fast paths build: live and stored data, null stored
    data, errors per account (no_live_data, wrong account, login failed, disconnected, unknown), open
    positions with margin, non-finite numbers as null, escapes and non-ASCII."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    first, second = golden["0 /api/mt5/accounts/live"]["body"], golden["1 /api/mt5/accounts/live"]["body"]
    assert '"stored_data": null' in first and '"stored_data": null' not in second.split("886066")[0]
    subset = golden["2 /api/mt5/accounts/live?accounts=886066,2000001,999,886557,2000001"]["body"]
    assert '"live_error"' in second and '"code": "unknown_account"' in subset
    for code in ("account_mismatch", "login_failed", "terminal_unavailable"):
        assert f'"code": "{code}"' in second, code
    assert '"equity": null' in second and '"margin_level": null' in second and '"profit": -0.0' in second
    assert "\\u00eb" in second and "\\ud834\\udd1e" in second and '\\"quoted\\"' in second
    live = json.loads(second.replace("<now>", "x"))
    assert any(a.get("live_data") and a["live_data"]["margin"] > 0 for a in live["accounts"])
    positions = json.loads(golden["3 /api/mt5/accounts/positions"]["body"].replace("<now>", "x"))
    assert sum(len(a.get("positions", ())) for a in positions["accounts"]) >= 2
