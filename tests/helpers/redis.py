"""A real redis-server for tests: started on a 127.0.0.1 port with nothing saved to disk, waited for
until it answers PING. A missing redis-server is a failure, never a skip (scripts/test installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def ping(port: int) -> bool:
    """True when a redis-server answers PING on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """redis-server on 127.0.0.1:`port` (`--save ''`, no AOF: a restart starts empty), running once
    it answers PING; `extra` are more command-line settings."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (scripts/test installs it with apt-get)")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("redis-server did not start")
        time.sleep(0.02)
    return proc


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 5 seconds."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
