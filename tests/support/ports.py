"""Loopback ports for the servers that tests and benchmarks start.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from its ephemeral range, the same
range every outgoing connection takes its local port from. Between the moment a test picks such a
port and the moment its server binds it, a connection may take it. That can be the server's own
connections to Postgres or RabbitMQ, made while it starts, before it listens. The server then
fails with "address already in use" (seen: an ECR API container whose workers opened their pools
first). So ports here come from just below the ephemeral range, where no connection is given a
local port. A port is handed out once per process, and only while nothing holds it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 12_000  # ports below the ephemeral range to choose from
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A loopback TCP port that nothing holds now, that no outgoing connection will take, and that
    this process has not handed out before."""
    high = _ephemeral_low()
    low = max(1025, high - _SPAN)
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}-{high - 1}")
