"""Builders for store test data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.domain.accounts import AccountUpdate, AccountValues, DataSource

T0 = datetime(2025, 10, 24, 15, 53, 19, 571000, tzinfo=UTC)
PASSWORD = "SENTINEL-p4ssw0rd-must-never-leave-the-store"


def ms(dt: datetime) -> datetime:
    """What both stores give back: aware UTC at millisecond precision (BSON's)."""
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def values(balance: float = 27047.52, **kw: object) -> AccountValues:
    base: dict[str, object] = dict(
        balance=balance,
        equity=balance,
        profit=0.0,
        margin=0.0,
        margin_free=balance,
        margin_level=0.0,
        leverage=100,
        currency="USD",
        trade_allowed=True,
    )
    base.update(kw)
    return AccountValues(**base)  # type: ignore[arg-type]


def update(
    account: int,
    balance: float = 27047.52,
    *,
    at: datetime = T0,
    source: DataSource = DataSource.LIVE,
    name: str | None = None,
    server: str | None = None,
    **kw: object,
) -> AccountUpdate:
    return AccountUpdate(
        account=account,
        values=values(balance, **kw),
        data_source=source,
        synced_at=at,
        live_data_at=at - timedelta(seconds=1) if source is DataSource.LIVE else None,
        name=name,
        server=server,
    )


def provisioned(account: int, client_id: str, **kw: object) -> dict[str, object]:
    """A provisioning document as the seed shows it, with credentials and non-sync fields."""
    doc: dict[str, object] = {
        "account": account,
        "name": f"Fund {account}",
        "fund_type": "SEPARATION",
        "client_id": client_id,
        "password": PASSWORD,
        "server": "MEXAtlantic-Real",
        "target_amount": 6590.31,
        "broker": "MEXAtlantic",
    }
    doc.update(kw)
    return doc
