"""The simulated bridge the benches run against, in its own process: `bridge.api.create_app` over
`bridge.simulated.simulated_pool`, on 127.0.0.1 with a free port. Prints `PORT <n>` when it listens,
and stops on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import _common
from aiohttp import web


async def serve(args: argparse.Namespace) -> None:
    from bridge.api import create_app
    from bridge.simulated import simulated_pool

    pool = simulated_pool(
        _common.account_entries(args.accounts, trading=args.trading),
        terminals=args.terminals,
        latency=args.latency_ms / 1000,
        login_cost=args.login_cost_ms / 1000,
    )
    app = create_app(pool, token=os.environ.get("BENCH_BRIDGE_TOKEN") or None, call_timeout=args.call_timeout)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
    await site.start()
    server = site._server
    port = server.sockets[0].getsockname()[1] if server and server.sockets else args.port  # type: ignore[union-attr]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--accounts", type=int, default=7)
    p.add_argument("--terminals", type=int, default=None, help="default: one terminal per account")
    p.add_argument("--latency-ms", type=float, default=0.0, help="per terminal call")
    p.add_argument("--login-cost-ms", type=float, default=0.0, help="per account switch")
    p.add_argument("--trading", action="store_true", help="accounts trade (costly to simulate)")
    p.add_argument("--call-timeout", type=float, default=30.0)
    p.add_argument("--port", type=int, default=0)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
