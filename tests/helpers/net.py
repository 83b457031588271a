"""Loopback ports for test servers: a free one to bind, and one where nothing listens."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it); bind it soon."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port where nothing listens: a connection to it is refused at once, never leaves the machine."""
    return free_port()
