"""The fake SDK and our listener hold to the real `metaapi-cloud-sdk` (read from its wheel with `ast`,
never installed or run: it would reach the cloud, which cannot run here): every callback of its
`SynchronizationListener` is answered by ours with compatible parameters, the calls the source makes
exist with those names, the exceptions it recognises by name exist, and every enum name MetaAPI's models
list converts to a MetaQuotes value.
"""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from agent.sources.metaapi import convert
from agent.sources.metaapi.book import AccountBook, Listener
from tests.sources.metaapi import fake_sdk
from tests.sources.metaapi.sdk_package import field_docs, methods, sdk_class, sdk_modules

LISTENER = ("clients/metaapi/synchronization_listener.py", "SynchronizationListener")


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [a.arg for a in fn.args.args][1:]  # without self


def test_our_listener_answers_every_sdk_callback_with_its_parameters() -> None:
    sdk = methods(sdk_class(*LISTENER))
    callbacks = {n: f for n, f in sdk.items() if n.startswith("on_")}
    assert len(callbacks) > 25
    ours = Listener(AccountBook(1), 0)
    for name, fn in callbacks.items():
        assert isinstance(fn, ast.AsyncFunctionDef), name
        handler = getattr(ours, name)
        assert inspect.iscoroutinefunction(handler), name
        params = _params(fn)
        sig = inspect.signature(handler)
        sig.bind(*params)  # the SDK calls positionally ...
        sig.bind(params[0], **dict.fromkeys(params[1:]))  # ... and with keywords (on_synchronization_started)
    explicit = {n for n in vars(Listener) if n.startswith("on_")}
    assert explicit <= callbacks.keys(), explicit - callbacks.keys()


def test_the_calls_the_source_makes_exist_in_the_sdk() -> None:
    expect = {
        ("metaapi/metaapi.py", "MetaApi"): {"__init__", "metatrader_account_api", "close"},
        ("metaapi/metatrader_account_api.py", "MetatraderAccountApi"): {"get_account"},
        ("metaapi/metatrader_account.py", "MetatraderAccount"): {"get_streaming_connection"},
        ("metaapi/streaming_metaapi_connection_instance.py", "StreamingMetaApiConnectionInstance"): {
            "connect",
            "wait_synchronized",
            "add_synchronization_listener",
            "remove_synchronization_listener",
            "close",
            "synchronized",
            "terminal_state",
            "history_storage",
        },
        ("metaapi/history_storage.py", "HistoryStorage"): {"get_deals_by_time_range", "deals"},
        ("metaapi/terminal_state.py", "TerminalState"): {"positions", "account_information"},
    }
    cloud = fake_sdk.FakeCloud()
    cloud.add("a", 1)
    api = cloud.factory("token", {})
    account = fake_sdk.FakeAccount(cloud, "a")
    conn = account.get_streaming_connection()
    fakes = {
        "MetaApi": api,
        "MetatraderAccountApi": api.metatrader_account_api,
        "MetatraderAccount": account,
        "StreamingMetaApiConnectionInstance": conn,
        "HistoryStorage": conn.history_storage,
        "TerminalState": conn.terminal_state,
    }
    for (path, cls), names in expect.items():
        real = methods(sdk_class(path, cls))
        assert names <= real.keys(), (cls, names - real.keys())
        for name in names - {"__init__"}:
            assert hasattr(fakes[cls], name), (cls, name)
            if isinstance(real[name], ast.AsyncFunctionDef):
                assert inspect.iscoroutinefunction(getattr(fakes[cls], name)), (cls, name)
    get_account = methods(sdk_class("metaapi/metatrader_account_api.py", "MetatraderAccountApi"))[
        "get_account"
    ]
    assert isinstance(get_account, ast.AsyncFunctionDef)
    wait = methods(sdk_class(*list(expect)[3]))["wait_synchronized"]
    assert _params(wait) == ["opts"]
    options = field_docs(
        sdk_class("metaapi/streaming_metaapi_connection_instance.py", "SynchronizationOptions")
    )
    assert "timeoutInSeconds" in options


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("clients/error_handler.py", "TooManyRequestsException"),
        ("clients/error_handler.py", "NotFoundException"),
        ("clients/error_handler.py", "UnauthorizedException"),
        ("clients/timeout_exception.py", "TimeoutException"),
    ],
)
def test_the_exceptions_recognised_by_name_exist(path: str, cls: str) -> None:
    sdk_class(path, cls)
    assert hasattr(fake_sdk, cls)


def test_rate_limit_metadata_carries_the_recommended_retry_time() -> None:
    assert "recommendedRetryTime" in field_docs(
        sdk_class("clients/error_handler.py", "TooManyRequestsErrorMetadata")
    )
    init = methods(sdk_class("clients/error_handler.py", "TooManyRequestsException"))["__init__"]
    assert _params(init)[:2] == ["message", "metadata"]


def _names(doc: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\b{prefix}[A-Z_]+\b", doc))


def test_every_enum_name_in_metaapis_models_converts() -> None:
    models = "metaapi/models.py"
    position = field_docs(sdk_class(models, "MetatraderPosition"))
    deal = field_docs(sdk_class(models, "MetatraderDeal"))
    cases = [
        (_names(position["type"], "POSITION_TYPE_"), convert.POSITION_TYPES),
        (
            _names(position["reason"], "POSITION_REASON_") - {"POSITION_REASON_UNKNOWN"},
            convert.POSITION_REASONS,
        ),
        (_names(deal["type"], "DEAL_"), convert.DEAL_TYPES),
        (_names(deal["entryType"], "DEAL_ENTRY_"), convert.DEAL_ENTRIES),
        (_names(deal["reason"], "DEAL_REASON_") - {"DEAL_REASON_UNKNOWN"}, convert.DEAL_REASONS),
    ]
    for names, table in cases:
        assert len(names) >= 2
        assert names <= table.keys(), names - table.keys()
    assert len(_names(deal["type"], "DEAL_")) == 18  # every MT5 deal type
    # the fields the converter reads are MetaAPI's own
    read = {
        "MetatraderPosition": "id type symbol magic time updateTime openPrice currentPrice stopLoss "
        "takeProfit volume profit unrealizedProfit swap unrealizedSwap comment reason",
        "MetatraderDeal": "id type entryType symbol magic time volume price commission swap profit "
        "positionId orderId comment reason",
        "MetatraderAccountInformation": "login balance equity margin freeMargin marginLevel leverage "
        "currency tradeAllowed name server",
    }
    for cls, keys in read.items():
        fields = field_docs(sdk_class(models, cls))
        assert set(keys.split()) <= fields.keys(), (cls, set(keys.split()) - fields.keys())
    info = field_docs(sdk_class(models, "MetatraderAccountInformation"))
    assert "profit" not in info  # so the account's profit stays None
    assert sdk_modules()  # the whole package was read
