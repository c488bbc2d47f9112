"""Ports for test servers come from below the kernel's ephemeral range, once each."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import free_port


def test_ports_are_below_the_ephemeral_range_free_and_never_given_twice() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < low for port in ports), [p for p in ports if p >= low]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free to bind when handed out
