"""Serving the agent's HTTP app as a process: the listening sockets bound before anything else starts
(so a port in use stops the start with nothing opened), the runner on those sockets, and the wait for
SIGINT/SIGTERM. Used by `mt5-agent run` and `mt5-agent demo`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket

from aiohttp import web

from agent.config import Settings

# The commands' exit codes (DESIGN.md section 3): all live, some failed, could not run (incl. bad config).
EXIT_OK, EXIT_SOME_FAILED, EXIT_COULD_NOT_RUN = 0, 1, 2


def stop_on_sigint() -> None:
    """SIGINT stops the agent from its first moment, whatever the process inherited. A background job of
    a non-interactive shell starts with SIGINT ignored, and Python keeps it ignored until `wait_for_stop`
    installs its handler: a `kill -INT` during start-up was lost and the agent ran on. Handlers of an
    embedding program are left alone."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGINT, signal.default_int_handler)


async def wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def bind_listen(host: str, port: int) -> list[socket.socket]:
    """Bind (and listen on) every address `host` resolves to, before anything else starts: a port in
    use then stops the start with nothing opened, no cycle run and nothing written. Raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # that address family is not enabled here (as asyncio)
                    socks.pop().close()
                    continue
                raise
            sock.listen(128)
            sock.setblocking(False)
        if not socks:
            raise OSError(errno.EADDRNOTAVAIL, f"no usable address for {host}")
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def serve(
    app: web.Application, socks: list[socket.socket], *, access_log: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve `app` on already bound sockets; the app's start-up (scheduler, prober) runs here."""
    runner = web.AppRunner(
        app, handle_signals=False, access_log=logging.getLogger("mt5_agent.access") if access_log else None
    )
    try:
        await runner.setup()
        for sock in socks:
            await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        for sock in socks:
            sock.close()
        raise
    return runner, socks[0].getsockname()[1]


def listen_error(prog: str, settings: Settings, exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{prog}: cannot listen on {settings.listen} (MT5_AGENT_LISTEN): {reason}"


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()
