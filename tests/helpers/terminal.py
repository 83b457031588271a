"""`dsk` on a pseudo-terminal that is its controlling terminal, as a person runs it: what it
writes (escape sequences stripped), keys sent to it, Ctrl-C as a SIGINT from the terminal."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time

from tests.helpers.dsk import DSK

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r|\x08")


class Pty:
    """The CLI on a pseudo-terminal that is its controlling terminal, so Ctrl-C (\\x03) is a SIGINT
    from the terminal, as for a person."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

        def ctty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [*DSK, *args], stdin=slave, stdout=slave,
            stderr=slave, env={**env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
            start_new_session=True, preexec_fn=ctty, close_fds=True)
        os.close(slave)
        self.raw = ""
        self.pos = 0

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.raw += data.decode("utf-8", "replace")
        return True

    def expect(self, pattern: str, limit: float = 60.0) -> re.Match[str]:
        """Wait for `pattern` in the (ANSI-stripped) output after the previous match; `limit`
        only guards against a hang."""
        end = time.monotonic() + limit
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > end or (not self._read(0.2) and self.proc.poll() is not None):
                raise AssertionError(f"{pattern!r} not seen; output:\n{self.text[-3000:]}")

    def send(self, data: str) -> None:
        os.write(self.master, data.encode())

    def wait(self) -> int:
        deadline = time.monotonic() + 60
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.proc.wait(timeout=5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
