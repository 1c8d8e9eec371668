"""Logs: JSON lines with trace ids, one summary line per cycle, each failure once with its account and
reason, key=value on a terminal, and no secret anywhere (logs or spans)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from agent.domain.runs import RunResult
from agent.telemetry.logs import JsonFormatter, KeyValueFormatter, make_handler, register_secrets
from tests.observability.conftest import MakeAgent, Seed, Spans

BAD = 891215
BRIDGE_TOKEN = "brg-7f3a9c1e5d2b8f60-secret"
ADMIN_TOKEN = "adm-0c9e8d7f6a5b4c3d-secret"
API_TOKEN = "api-1a2b3c4d5e6f7a8b-secret"


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]  # every line is one JSON document


@pytest.fixture
def json_logs() -> Iterator[Captured]:
    """The agent's handler (as setup_logging builds it) on the root logger, for this test only."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_cycle_logs_are_json_with_trace_ids(
    seed: Seed, make_agent: MakeAgent, spans: Spans, json_logs: Captured
):
    seed.bridge.behaviour[BAD] = "http_500"
    seed.bridge.behaviour[886066] = "not_found"
    h = await make_agent(seed.url)
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.PARTIAL
    lines = json_logs.json_lines()
    cycle = spans.named("sync.cycle")[0]
    trace_id = trace.format_trace_id(cycle.context.trace_id)

    # Each failure exactly once, with its account and reason, inside the cycle's trace.
    failures = [d for d in lines if "account" in d and d.get("logger") == "mt5_agent.sync"]
    assert sorted((d["account"], d["reason"]) for d in failures) == [
        (886066, "not_found"),
        (BAD, "http_status"),
    ]
    for d in failures:
        assert d["level"] == "warning"
        assert d["trace_id"] == trace_id
        assert d["span_id"] == trace.format_span_id(cycle.context.span_id)

    # One summary line for the cycle, carrying the cycle's trace id and run id.
    summaries = [d for d in lines if d["msg"].startswith("sync complete:")]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["msg"].startswith("sync complete: 5/7 accounts synced in ")
    assert summary["msg"].endswith("s (2 failed)")
    assert (summary["run_id"], summary["result"], summary["trace_id"]) == (run.run_id, "partial", trace_id)
    for d in lines:
        assert {"ts", "level", "logger", "msg"} <= d.keys()


async def test_outside_a_span_there_are_no_trace_ids(json_logs: Captured):
    logging.getLogger("mt5_agent.test").info("plain", extra={"account": 1})
    (line,) = [d for d in json_logs.json_lines() if d["logger"] == "mt5_agent.test"]
    assert line["msg"] == "plain" and line["account"] == 1
    assert "trace_id" not in line and "span_id" not in line


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_key_value_on_a_terminal_json_otherwise():
    record = logging.LogRecord(
        "mt5_agent.sync", logging.WARNING, __file__, 1, "account %s failed", (BAD,), None
    )
    record.account, record.reason = BAD, "http_status"
    tty = make_handler("auto", _Tty())
    pipe = make_handler("auto", io.StringIO())
    assert isinstance(tty.formatter, KeyValueFormatter) and isinstance(pipe.formatter, JsonFormatter)
    line = tty.format(record)
    assert "WARNING" in line and f"account {BAD} failed" in line
    assert f"account={BAD} reason=http_status" in line
    assert json.loads(pipe.format(record))["reason"] == "http_status"


def test_redaction_is_a_second_line_of_defence():
    register_secrets(['qu"ote-secret-value'])
    msg = (
        "GET /api/v1/stream?token=abc123&x=1 Authorization: Bearer eyJhbGciOi.payload.sig "
        'mongodb://user:pa55word@db:27017/ leaked qu"ote-secret-value'
    )
    record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, (), None)
    for formatter in (JsonFormatter(), KeyValueFormatter()):
        out = formatter.format(record)
        for secret in ("abc123", "eyJhbGciOi", "pa55word", "ote-secret-value"):
            assert secret not in out, (formatter, out)
        assert "token=***&x=1" in out and "Bearer ***" in out and "mongodb://user:***@db" in out
    assert json.loads(JsonFormatter().format(record))["msg"].endswith("leaked ***")


async def test_no_secrets_in_logs_or_spans(
    seed: Seed, make_agent: MakeAgent, spans: Spans, json_logs: Captured, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)  # request lines, query strings included
    seed.bridge.behaviour[BAD] = "http_500"
    h = await make_agent(seed.url, bridge_token=BRIDGE_TOKEN, admin_token=ADMIN_TOKEN, api_token=API_TOKEN)
    assert (await h.agent.service.run_cycle()).result is RunResult.PARTIAL
    for path in ("/readyz", f"/api/v1/accounts?token={ADMIN_TOKEN}", f"/api/v1/stream?token={API_TOKEN}"):
        async with h.session.get(h.url(path), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            await resp.read()
    await seed.server.close()
    assert (await h.agent.service.run_cycle()).result is RunResult.SKIPPED

    secrets = (BRIDGE_TOKEN, ADMIN_TOKEN, API_TOKEN)
    text = json_logs.text
    assert "sync complete:" in text and "sync skipped:" in text and "account 891215 failed" in text
    assert "/api/v1/accounts?token=***" in text  # the access line is there, scrubbed
    for secret in secrets:
        assert secret not in text
    # At the source, too: no agent code puts a secret into a record (the scrubbing is only a backstop).
    agent_records = [r for r in caplog.records if r.name.startswith("mt5_agent")]
    assert agent_records
    for r in agent_records:
        raw = r.getMessage() + repr(r.__dict__)
        assert not any(secret in raw for secret in secrets), raw
    # And nothing secret in the spans that would be exported (URLs with queries included).
    server_spans = [s for s in spans.finished() if s.kind is trace.SpanKind.SERVER]
    assert len(server_spans) == 3
    for s in spans.finished():
        dumped = repr(dict(s.attributes or {})) + repr([dict(e.attributes or {}) for e in s.events])
        assert not any(secret in dumped for secret in secrets), (s.name, dumped)
