"""A free loopback port for a server a test starts (the OS picks; the race with other binders is
accepted: servers that fail to bind make their test fail loudly, never hang)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
