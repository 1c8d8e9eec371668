"""Issue 10 finding 4: a cap on every source response, compressed and decompressed, against a real
aiohttp server on loopback. A gzip bomb (1 MiB inflating to 1 GiB) and a 100 MiB body are abandoned
as soon as the cap is passed, with reason invalid_payload and "response larger than N bytes"; memory
stays flat; ordinary gzip and deflate answers still work."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.domain.accounts import Reason
from agent.domain.runs import RunResult
from agent.sources.bridge import BridgeClient, BridgeError, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import SyncService
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS, SeedBridge

MiB = 1024 * 1024
CAP = 1 * MiB
BOMB_MIB = 1024  # inflated size of the gzip bomb
HUGE_MIB = 100  # size of the plain huge body
BAD = 891215


def gzip_bomb(mib: int) -> bytes:
    """A gzip member of `mib` MiB of zeros, about 1 KiB per MiB: one full-flushed deflate segment for
    1 MiB of zeros repeated (a full flush resets the compressor, so each segment is self-contained)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    block = bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + segment * mib + b"\x03\x00" + struct.pack("<II", crc, (mib * MiB) & 0xFFFFFFFF)


def test_gzip_bomb_is_what_it_claims():
    small = gzip_bomb(3)
    assert zlib.decompress(small, 16 + zlib.MAX_WBITS) == bytes(3 * MiB)
    assert len(gzip_bomb(BOMB_MIB)) < 1.1 * MiB


@dataclass
class BigBridge(SeedBridge):
    """The seed's bridge, plus oversized answers on chosen endpoints."""

    summary_mode: str = "ok"  # ok | bomb | huge | huge_declared | gzip | deflate | raw_deflate
    info_bomb: set[int] = field(default_factory=set)
    sent: dict[str, int] = field(default_factory=dict)  # bytes a streaming handler managed to send
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)  # the streaming handler ended
    bomb: bytes = b""

    async def _stream_huge(self, request: web.Request, name: str, declared: bool) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if declared:
            headers["Content-Length"] = str(HUGE_MIB * MiB)
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        chunk = b'{"accounts": ["' + b"x" * (64 * 1024 - 15)
        filler = b"x" * (64 * 1024)
        self.sent[name] = 0
        try:
            for i in range(HUGE_MIB * 16):
                await resp.write(chunk if i == 0 else filler)
                self.sent[name] += 64 * 1024
        except (ConnectionError, RuntimeError):
            pass  # the client went away: what we count is what got out
        finally:
            self.stream_done.set()
        return resp

    async def summary(self, request: web.Request) -> web.StreamResponse:
        mode = self.summary_mode
        if mode == "bomb":
            self.requests.append("summary")
            return web.Response(
                body=self.bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
            )
        if mode in ("huge", "huge_declared"):
            self.requests.append("summary")
            return await self._stream_huge(request, "summary", declared=mode == "huge_declared")
        if mode in ("gzip", "deflate", "raw_deflate"):
            self.requests.append("summary")
            doc = (
                b'{"accounts": ['
                + b",".join(b'{"account": %d, "name": "n"}' % a for a in self.accounts)
                + b"]}"
            )
            if mode == "gzip":
                c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            else:
                c = zlib.compressobj(
                    6, zlib.DEFLATED, zlib.MAX_WBITS if mode == "deflate" else -zlib.MAX_WBITS
                )
            body = c.compress(doc) + c.flush()
            coding = "gzip" if mode == "gzip" else "deflate"
            return web.Response(
                body=body, headers={"Content-Type": "application/json", "Content-Encoding": coding}
            )
        return await super().summary(request)

    async def info(self, request: web.Request) -> web.StreamResponse:
        account = int(request.match_info["id"])
        if account in self.info_bomb:
            self.requests.append(f"info:{account}")
            return web.Response(
                body=self.bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
            )
        return await super().info(request)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(BOMB_MIB)


@pytest.fixture
async def big(bomb: bytes) -> AsyncIterator[tuple[BigBridge, str]]:
    bridge = BigBridge(bomb=bomb)
    server = TestServer(bridge.app(), host="127.0.0.1")
    await server.start_server()
    yield bridge, str(server.make_url("")).rstrip("/")
    bridge.release.set()
    await server.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    await st.open()
    yield st
    await st.close()


@pytest.fixture
async def service(big, store) -> AsyncIterator[SyncService]:
    _, url = big
    client = BridgeClient(url, timeout=30.0, max_response_bytes=CAP)
    svc = SyncService(store, BridgeSource(client), health_backoff=0.01, health_retries=1)
    assert await svc.ensure_ready()
    yield svc
    await client.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def _measured(coro) -> tuple[object, int, int]:
    """(result, peak bytes Python allocated meanwhile, RSS growth)."""
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = await coro
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - base, _rss_bytes() - rss0


async def test_gzip_bomb_account_list_is_abandoned_at_the_cap(big, service):
    bridge, _ = big
    bridge.summary_mode = "bomb"
    run, peak, rss_growth = await _measured(service.run_cycle())
    assert run.result is RunResult.FAILED
    assert run.error == f"account list: summary: response larger than {CAP} bytes"
    assert peak < 16 * MiB, f"{peak / MiB:.1f} MiB allocated while reading a {BOMB_MIB} MiB bomb"
    assert rss_growth < 100 * MiB
    assert service.fleet.status.bridge_up is True  # the bridge answered: it answered badly


async def test_gzip_bomb_in_one_info_fails_only_that_account(big, service, store):
    bridge, _ = big
    bridge.info_bomb = {BAD}
    run, peak, _ = await _measured(service.run_cycle())
    assert run.result is RunResult.PARTIAL
    assert run.failures == {str(BAD): Reason.INVALID_PAYLOAD.value}
    assert run.synced_live == len(SEED_ACCOUNTS) - 1
    assert peak < 16 * MiB
    assert service.fleet.snapshot().failures[(BAD, Reason.INVALID_PAYLOAD)] == 1


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content_length"])
async def test_huge_body_is_abandoned_as_soon_as_the_cap_is_passed(big, service, declared):
    bridge, _ = big
    bridge.summary_mode = "huge_declared" if declared else "huge"
    client = service.source.client
    t0 = asyncio.get_running_loop().time()
    (result, peak, _) = await _measured(_listing_error(client))
    elapsed = asyncio.get_running_loop().time() - t0
    assert isinstance(result, BridgeError)
    assert result.reason is Reason.INVALID_PAYLOAD
    assert result.message == f"summary: response larger than {CAP} bytes"
    assert peak < 16 * MiB
    # The reading stopped: the server could not push the whole 100 MiB (socket buffers hold a few).
    async with asyncio.timeout(10):
        await bridge.stream_done.wait()
    assert bridge.sent["summary"] < 40 * MiB, bridge.sent
    assert elapsed < 10


async def _listing_error(client: BridgeClient) -> BridgeError | None:
    try:
        await client.accounts()
    except BridgeError as exc:
        return exc
    return None


@pytest.mark.parametrize("mode", ["gzip", "deflate", "raw_deflate"])
async def test_compressed_answers_within_the_cap_still_work(big, service, mode):
    bridge, _ = big
    bridge.summary_mode = mode
    run = await service.run_cycle()
    assert run.result is RunResult.SUCCESS and run.synced_live == len(SEED_ACCOUNTS)


async def test_default_cap_is_the_settings_default():
    from agent.config import Settings

    assert BridgeClient("http://127.0.0.1:1").max_response_bytes == Settings().max_response_bytes
