"""Read the fenced blocks of a Markdown file and run them the way a reader would.

Three kinds of block matter to the documentation tests (tests/test_readme.py):

* a ```python block is a complete program: copied into a file it runs, and `mypy --strict` passes it;
  when a plain ``` block follows right after it (no text between), that block is what it prints;
* a plain ``` block whose first line starts with `$ ` is a terminal session: each `$ ` line is a shell
  command, the lines up to the next command are what it prints (stdout and stderr in one pipe), and
  a last line `[exit N]` is its exit status (0 when absent);
* anything else (bash set-up lines, TOML, tables of numbers) is left alone.

An HTML comment right before a block (invisible on GitHub) tunes how it is run, one per line:

    <!-- readme-test: tty -->              run each command in a pseudo-terminal (what a person sees)
    <!-- readme-test: volatile REGEX -->   in output lines matching REGEX every number may differ
    <!-- readme-test: drop REGEX -->       text matching REGEX may be there or not (it is removed
                                           from both sides before comparing)

Output is compared after `normalize`: the parts that change from run to run by nature (ids, clock
times, durations, rates) are replaced by placeholders on both sides and runs of blanks count as one
(table columns move with the width of a value); everything else - the answer
text, token counts, costs - must match exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["OFF_PEAK", "ROOT", "Block", "Command", "blocks", "commands", "doc_env", "make_workdir",
           "normalize", "run_python", "run_session", "update_document"]

ROOT = Path(__file__).resolve().parents[2]
# An off-peak instant (a Thursday 03:00 in Beijing): costs shown in the docs are off-peak prices;
# DeepSeek bills peak hours (Beijing working days 09:00-12:00, 14:00-18:00) at twice these.
OFF_PEAK = "2026-12-03T03:00:00+08:00"

_FENCE = re.compile(r"^(`{3,})(\S*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->\s*$")


@dataclasses.dataclass
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language and text, the
    directives before it, and for a python block the plain block printed right after it (if any)."""

    path: Path
    line: int
    lang: str
    text: str
    tty: bool = False
    volatile: list[str] = dataclasses.field(default_factory=list)
    drop: list[str] = dataclasses.field(default_factory=list)
    output: str | None = None

    def normalize(self, text: str) -> str:
        """`normalize(text)` with this block's directives."""
        return normalize(text, self.volatile, self.drop)

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclasses.dataclass
class Command:
    """One `$ ` line of a terminal session and what the document says it prints."""

    line: str
    expected: str
    exit_code: int


def blocks(path: Path) -> list[Block]:
    """Every fenced block of `path`, python blocks paired with the output block right after them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending: dict[str, list[str]] = {}
    i = 0
    last_end = -10
    while i < len(lines):
        m = _FENCE.match(lines[i])
        d = _DIRECTIVE.match(lines[i])
        if d:
            pending.setdefault(d.group(1), []).append(d.group(2))
            i += 1
            continue
        if not m:
            if lines[i].strip():
                pending = {}
            i += 1
            continue
        fence, lang = m.group(1), m.group(2)
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != fence:
            body.append(lines[i])
            i += 1
        text = "\n".join(body) + "\n"
        unknown = set(pending) - {"tty", "volatile", "drop"}
        if unknown:
            raise ValueError(f"{path.name}:{start + 1}: unknown readme-test directive {sorted(unknown)}")
        block = Block(path, start + 1, lang, text, tty="tty" in pending,
                      volatile=[v for v in pending.get("volatile", []) if v],
                      drop=[v for v in pending.get("drop", []) if v])
        if lang == "" and found and found[-1].lang == "python" and last_end == start - 1:
            found[-1].output = text
        else:
            found.append(block)
        last_end = i
        pending = {}
        i += 1
    return found


def commands(block: Block) -> list[Command]:
    """The commands of a terminal-session block with their expected output and exit status."""
    out: list[Command] = []
    for raw in block.text.splitlines():
        if raw.startswith("$ "):
            out.append(Command(raw[2:], "", 0))
        elif out:
            m = re.fullmatch(r"\[exit (\d+)\]", raw.strip())
            if m:
                out[-1].exit_code = int(m.group(1))
            else:
                out[-1].expected += raw + "\n"
    for c in out:
        c.expected = c.expected.rstrip("\n")
    return out


_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_CLOCK = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_CREATED = re.compile(r'"created":\s*\d+')
_RATE = re.compile(r"\d[\d,]*(\.\d+)?/s\b")
_DURATION = re.compile(r"(?<![\w.])\d+(\.\d+)?\s?(ms|µs|s)\b")
_HEX_ID = re.compile(r"\b[0-9a-f]{12}\b")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")


def normalize(text: str, volatile: Sequence[str] = (), drop: Sequence[str] = ()) -> str:
    """`text` with run-to-run values replaced by placeholders, spacing runs collapsed (table columns
    move with the width of a duration) and trailing blanks dropped."""
    rules = [re.compile(v) for v in volatile]
    for d in drop:
        text = re.sub(d, "", text)
    out: list[str] = []
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    for line in text.splitlines():
        line = _UUID.sub("<uuid>", line)
        line = _CLOCK.sub("<time>", line)
        line = _CREATED.sub('"created":<time>', line)
        line = _RATE.sub("<rate>", line)
        line = _DURATION.sub("<duration>", line)
        line = _HEX_ID.sub("<id>", line)
        if any(r.search(line) for r in rules):
            line = _NUMBER.sub("<n>", line)
        out.append(re.sub(r"[ \t]+", " ", line.strip()))
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


_MARK = "@@readme-test-status"


def run_session(lines: Sequence[str], *, cwd: Path, env: dict[str, str], tty: bool,
                timeout: float = 180.0) -> list[tuple[str, int]]:
    """Run a terminal session's commands in ONE bash, as a reader typing them would (a server put in
    the background with `&` serves the commands after it, and is stopped at the end); for each
    command, what it printed (stdout and stderr in one stream) and its exit status. With `tty`, bash
    runs in a pseudo-terminal (what a person at a terminal sees)."""
    script = "".join(f"{line}\n__s=$?; printf '\\n{_MARK} %d\\n' \"$__s\"\n" for line in lines)
    script += "kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; exit 0\n"
    raw = _run(script, cwd=cwd, env=env, tty=tty, timeout=timeout)
    out: list[tuple[str, int]] = []
    pending: list[str] = []
    for text in raw.replace("\r\n", "\n").split("\n"):
        if text.startswith(_MARK):
            out.append(("\n".join(pending), int(text.split()[-1])))
            pending = []
        else:
            pending.append(text)
    if len(out) != len(lines):
        raise AssertionError(f"the session stopped after {len(out)} of {len(lines)} commands:\n{raw}")
    return out


def _run(script: str, *, cwd: Path, env: dict[str, str], tty: bool, timeout: float) -> str:
    # Its own session, so that a timeout kills every process the commands started (a server left in
    # the background would otherwise outlive the test and hold its port).
    if tty:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdin=follower,
                                stdout=follower, stderr=follower, start_new_session=True)
        os.close(follower)
    else:
        proc = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        leader = proc.stdout.fileno()
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the session ran past {timeout:.0f}s:\n{b''.join(chunks).decode()}")
            ready, _, _ = select.select([leader], [], [], min(left, 1.0))
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: every holder of the terminal closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None and not tty:
                continue  # drain what is still in the pipe
            elif proc.poll() is not None:
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if tty:
            os.close(leader)
        elif proc.stdout is not None:
            proc.stdout.close()
        proc.wait()
    return b"".join(chunks).decode("utf-8", "replace")


def doc_env(home: Path) -> dict[str, str]:
    """The environment a documented command runs in: the running venv's `dsk` and python first on
    PATH, a private HOME and DSK_HOME, no key or proxy variable of the developer's, the pricing
    clock at an off-peak hour, a plain 100-column terminal, warnings as errors."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEEPSEEK_", "DSK_", "PYTEST_")) and "proxy" not in k.lower()}
    env.update({
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        "HOME": str(home),
        "DSK_HOME": str(home / ".deepseek-kit"),
        "DSK_FAKE_NOW": OFF_PEAK,
        "PYTHONPATH": str(ROOT / "src"),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "COLUMNS": "100", "LINES": "40", "TERM": "dumb", "NO_COLOR": "1",
        "PYTHONWARNINGS": "error",
    })
    return env


def make_workdir(tmp: Path) -> Path:
    """A fresh folder like a checkout's root as far as the docs go: a copy of examples/ and `./dsk`
    (the checkout's script, bound to the venv running this)."""
    work = tmp / "work"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    (work / "dsk").write_text(f'#!/usr/bin/env bash\nexec "{Path(sys.executable).parent}/dsk" "$@"\n')
    (work / "dsk").chmod(0o755)
    return work


def run_python(block: Block, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run a python block as a file in a fresh work folder."""
    work = make_workdir(tmp)
    script = work / "example.py"
    script.write_text(block.text)
    return subprocess.run([sys.executable, str(script)], cwd=work, env=doc_env(tmp),
                          capture_output=True, text=True, timeout=180)


def _clean(text: str) -> str:
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def update_document(path: Path) -> int:
    """Rerun the sessions and python blocks with output of `path`; write what they printed into it.
    Returns how many blocks changed."""
    lines = path.read_text(encoding="utf-8").split("\n")
    changed = 0
    # From the bottom up, so that line numbers of blocks not yet rewritten stay right.
    found = blocks(path)
    for block in reversed(found):
        with tempfile.TemporaryDirectory() as tmp:
            if block.lang == "" and block.text.startswith("$ "):
                cmds = commands(block)
                ran = run_session([c.line for c in cmds], cwd=make_workdir(Path(tmp)), env=doc_env(Path(tmp)),
                                  tty=block.tty)
                body: list[str] = []
                for i, (cmd, (out, code)) in enumerate(zip(cmds, ran, strict=True)):
                    body.append("$ " + cmd.line)
                    if _clean(out):
                        body.extend(_clean(out).split("\n"))
                    if code:
                        body.append(f"[exit {code}]")
                    if i + 1 < len(cmds) and _blank_after(block.text, cmd.line):
                        body.append("")
                start, n = block.line, len(block.text.rstrip("\n").split("\n"))
            elif block.lang == "python" and block.output is not None:
                done = run_python(block, Path(tmp))
                if done.returncode:
                    raise SystemExit(f"{block.name} failed:\n{done.stderr}")
                body = _clean(done.stdout).split("\n")
                start = block.line + len(block.text.rstrip("\n").split("\n")) + 2
                n = len(block.output.rstrip("\n").split("\n")) if block.output.strip() else 0
            else:
                continue
        before = "\n".join(lines[start:start + n])
        # Only real differences: a rerun that changed nothing but ids, clocks and durations keeps
        # the document's text (and its diff quiet).
        if block.normalize(before) != block.normalize("\n".join(body)):
            lines[start:start + n] = body
            changed += 1
    path.write_text("\n".join(lines), encoding="utf-8")
    return changed


def _blank_after(text: str, command: str) -> bool:
    """Whether the document leaves a blank line after `command`'s output (kept when rewriting)."""
    after = text.split("$ " + command, 1)[1]
    nxt = after.find("\n$ ")
    return nxt > 0 and after[:nxt].endswith("\n")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {update_document(Path(name))} block(s) rewritten")
