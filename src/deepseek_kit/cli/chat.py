"""`dsk chat`: a streaming REPL that keeps the conversation in memory.

Input: prompt_toolkit (line editing, in-memory history) when stdin and stdout are terminals; plain
lines from stdin otherwise, so scripts and tests can drive it. Output: rich, styled, when stdout is
a terminal; plain text otherwise. `exit`, `quit`, `/exit`, `/quit` or EOF (Ctrl-D) end the session;
`/clear` forgets the conversation. Ctrl-C during an answer stops that answer (the turn is dropped)
and keeps the session; Ctrl-C at the prompt clears the line.

Each assistant turn is kept as DeepSeek returned it, `reasoning_content` included: thinking mode
with tools requires it back verbatim (deepseek-api.md §5.6), and without tools it is ignored.
An API error in an interactive session is reported and the session goes on; when stdin is not a
terminal it ends the session with exit status 1, like a failing command in a script.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from . import common

if TYPE_CHECKING:
    import asyncio

__all__ = ["add_parser", "run"]

HELP = "chat in the terminal (streaming, keeps the conversation)"
EXIT_WORDS = frozenset({"exit", "quit", "/exit", "/quit", ":q"})


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "chat", help=HELP, description=HELP + ". End with exit, quit or Ctrl-D; /clear starts over.")
    common.add_client_options(p)
    p.set_defaults(func=run)
    return p


def _tty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Input


class LineReader:
    """Lines from a non-terminal stdin. A daemon thread reads the raw file descriptor (not
    sys.stdin, whose lock a blocked daemon thread would hold at interpreter exit), so the event loop
    stays free and Ctrl-C is never stuck behind a blocking read."""

    def __init__(self, prompt: str = "") -> None:
        import asyncio
        import threading

        self._prompt = prompt
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._fd = sys.stdin.fileno()
        threading.Thread(target=self._pump, name="dsk-stdin", daemon=True).start()

    def _pump(self) -> None:
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        buf = ""
        put = self._queue.put_nowait
        try:
            while True:
                data = os.read(self._fd, 65536)
                if not data:
                    break
                buf += decoder.decode(data)
                *lines, buf = buf.split("\n")
                for line in lines:
                    self._loop.call_soon_threadsafe(put, line)
            buf += decoder.decode(b"", final=True)
        except (OSError, RuntimeError):  # stdin closed, or the loop is gone at exit
            pass
        try:
            if buf:
                self._loop.call_soon_threadsafe(put, buf)
            self._loop.call_soon_threadsafe(put, None)
        except RuntimeError:
            pass

    async def read(self) -> str:
        if self._prompt:
            sys.stdout.write(self._prompt)
            sys.stdout.flush()
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)
            raise EOFError
        return line.rstrip("\r")


class PromptReader:
    """prompt_toolkit line editing with in-memory history (this session only)."""

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        self._session: Any = PromptSession(history=InMemoryHistory())

    async def read(self) -> str:
        result: str = await self._session.prompt_async("> ")
        return result


# ---------------------------------------------------------------------------------------------
# Output


class PlainRenderer:
    """Answers as plain text on stdout, one blank-line-free block per turn; reasoning to stderr
    (when stderr is a terminal or --show-reasoning)."""

    def __init__(self, show_reasoning: bool) -> None:
        self.out = sys.stdout
        self.reasoning = common.ReasoningWriter(show_reasoning)
        self._last = ""

    def banner(self, text: str) -> None:
        pass

    def info(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def start(self) -> None:
        self._last = ""

    def think(self, text: str) -> None:
        self.reasoning.write(text)

    def say(self, text: str) -> None:
        self.reasoning.end()
        self.out.write(text)
        self.out.flush()
        self._last = text

    def end(self, interrupted: bool = False) -> None:
        self.reasoning.end()
        if self._last and not self._last.endswith("\n"):
            self.out.write("\n")
        if interrupted:
            print("[interrupted]", file=sys.stderr, flush=True)
        self.out.flush()
        self._last = ""


class RichRenderer:
    """Styled streaming on a terminal: reasoning dim and italic, then the answer."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)
        self._state = ""  # "", "think" or "say"
        self._last = ""

    def banner(self, text: str) -> None:
        self.console.print(text, style="dim", markup=False)

    def info(self, text: str) -> None:
        self.console.print(text, style="dim", markup=False)

    def start(self) -> None:
        self._state = ""
        self._last = ""

    def _write(self, text: str, style: str | None) -> None:
        self.console.print(text, end="", style=style, markup=False, highlight=False)
        self.console.file.flush()
        self._last = text

    def think(self, text: str) -> None:
        self._state = "think"
        self._write(text, "dim italic")

    def say(self, text: str) -> None:
        if self._state == "think":
            self._write("\n\n", None)
        self._state = "say"
        self._write(text, None)

    def end(self, interrupted: bool = False) -> None:
        if self._last and not self._last.endswith("\n"):
            self.console.print()
        if interrupted:
            self.console.print("[interrupted]", style="yellow", markup=False)
        self.console.print()
        self._state = ""
        self._last = ""


# ---------------------------------------------------------------------------------------------
# Session


def run(args: argparse.Namespace) -> int:
    with common.backend(args) as b:
        return common.run_async(lambda: _chat(args, b))


async def _answer(client: Any, messages: list[Any], kw: dict[str, Any], r: Any) -> dict[str, Any]:
    stream = await client.chat.completions.create(messages=messages, stream=True, **kw)
    async with stream:
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.reasoning_content:
                r.think(delta.reasoning_content)
            if delta.content:
                r.say(delta.content)
    completion = stream.get_final_completion()
    if not completion.choices:
        return {"role": "assistant", "content": ""}
    msg: dict[str, Any] = completion.choices[0].message.to_param()
    msg["role"] = "assistant"
    return msg


async def _interruptible(task: asyncio.Task[Any]) -> bool:
    """Wait for `task`; Ctrl-C meanwhile cancels it instead of the session. True if it finished."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    installed = False
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        pass
    try:
        await asyncio.wait({task})
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)
    return not task.cancelled()


async def _chat(args: argparse.Namespace, b: common.Backend) -> int:
    import asyncio

    from deepseek_kit import DeepSeekError

    interactive = _tty(sys.stdin) and _tty(sys.stdout)
    reader: Any
    r: Any
    try:
        reader = PromptReader() if interactive else LineReader()
    except ImportError:  # installed without the [cli] extra: plain lines, still a prompt
        reader = LineReader(prompt="> ")
    try:
        r = RichRenderer() if _tty(sys.stdout) else PlainRenderer(args.show_reasoning)
    except ImportError:
        r = PlainRenderer(args.show_reasoning)
    base: list[dict[str, Any]] = []
    if args.system:
        base.append({"role": "system", "content": args.system})
    messages = list(base)
    where = "the built-in emulator (synthetic answers)" if b.synthetic else b.base_url
    r.banner(f"dsk chat: {b.model} at {where}. exit, quit or Ctrl-D to leave; /clear starts over.")
    status = 0
    async with common.make_client(b, args) as client:
        kw = common.request_kwargs(b, args)
        while True:
            try:
                line = await reader.read()
            except EOFError:
                break
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, like a shell
                continue
            text = line.strip()
            if not text:
                continue
            if text.lower() in EXIT_WORDS:
                break
            if text.lower() == "/clear":
                messages = list(base)
                r.info("(conversation cleared)")
                continue
            messages.append({"role": "user", "content": line})
            r.start()
            task = asyncio.ensure_future(_answer(client, messages, kw, r))
            finished = await _interruptible(task)
            if not finished:
                r.end(interrupted=True)
                messages.pop()
                continue
            exc = task.exception()
            if exc is None:
                r.end()
                messages.append(task.result())
                continue
            r.end()
            messages.pop()
            if not isinstance(exc, DeepSeekError):
                raise exc
            print(common.error_line(exc, (b.api_key,)), file=sys.stderr, flush=True)
            if not interactive:
                status = common.EXIT_API
                break
    return status
