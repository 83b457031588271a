"""`dsk chat`: a streaming REPL over a `Conversation`, with slash commands.

Input: prompt_toolkit when stdin and stdout are terminals (line editing, Alt-Enter for a new line,
persistent history in `$DSK_HOME/chat_history`); plain lines from stdin otherwise, so scripts and
tests can drive it. A message that starts with `\"\"\"` runs until a line that ends with `\"\"\"`, in
both modes. Output: rendered markdown with collapsible reasoning on a terminal, plain text
otherwise (`chat_render.py`). Slash commands (`/help`, `/system`, `/model`, `/think`, `/preset`,
`/clear`, `/save`, `/load`, `/tokens`, `/cost`, `/exit`) are in `chat_commands.py`; `exit`, `quit`
or EOF (Ctrl-D) end the session too.

The conversation is a `deepseek_kit.Conversation`: it sends reasoning_content back exactly where
the API requires it (docs/deepseek-api-notes.md#thinking-mode), applies the context policy (`--window`,
`--budget`, `--summarize`), and commits a turn when its answer is complete. Ctrl-C during an answer
cancels the task; what arrived stays in the history as the partial turn, marked interrupted with its
estimated cost (`store.py`), and the session goes on; Ctrl-C at the prompt clears the line. Every
conversation is saved from its first answer on (`store.py`), unless logging is off.
An API error in an interactive session is reported and the session goes on; when
stdin is not a terminal it ends the session with exit status 1 (2 for a bad slash command), like a
failing command in a script.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from . import common, store

if TYPE_CHECKING:
    import asyncio

    from .chat_commands import ChatState

__all__ = ["add_parser", "read_message", "run"]

HELP = "chat in the terminal (streaming, keeps the conversation)"
EXIT_WORDS = frozenset({"exit", "quit", ":q"})
_TOO_LONG = "\x00dsk: line too long"  # queued by LineReader: a line past the input bound
FENCE = '"""'


def _rounds(text: str) -> int:
    return common._non_negative_int(text)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "chat", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=HELP + ". Type /help in the chat for its commands; exit, quit or Ctrl-D to leave.",
        epilog="examples:\n  dsk chat\n  dsk chat --preset coding -s 'You review Python code.'\n"
               "  dsk chat --resume last\n  printf 'Hi\\n/tokens\\n' | dsk chat --mock")
    common.add_client_options(p)
    p.add_argument("--preset", metavar="NAME",
                   help="DeepSeek's recommended settings for a task: coding, math, data, conversation, "
                        "translation, creative (sets the temperature, turns thinking off)")
    p.add_argument("--resume", metavar="ID",
                   help="continue a saved conversation (/save saves one); 'last' for the latest")
    g = p.add_argument_group("context (what of the history each request carries)")
    g.add_argument("--window", type=_rounds, default=5, metavar="ROUNDS",
                   help="keep at least the last ROUNDS question-answer rounds, dropping older ones "
                        "ROUNDS at a time so DeepSeek's prefix cache keeps hitting (default 5; 0 "
                        "keeps everything)")
    g.add_argument("--budget", type=_rounds, default=0, metavar="TOKENS",
                   help="also keep the context under TOKENS (estimated), dropping the oldest rounds")
    g.add_argument("--summarize", action="store_true",
                   help="summarize older turns (by the model) once they pass 2,000 characters")
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
        self._limit = common.max_input_bytes()
        threading.Thread(target=self._pump, name="dsk-stdin", daemon=True).start()

    def _pump(self) -> None:
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # The pieces of the line being read: only new data is searched for a newline (a long line
        # costs linear time), and a line longer than the input bound ends the session
        # (`dsk chat < /dev/zero` must not grow until the kernel kills it).
        parts: list[str] = []
        size = 0
        limit = self._limit
        put = self._queue.put_nowait
        end: str | None = None
        try:
            while True:
                data = os.read(self._fd, 65536)
                if not data:
                    break
                text = decoder.decode(data)
                if "\n" in text:
                    first, *lines, rest = text.split("\n")
                    self._loop.call_soon_threadsafe(put, "".join([*parts, first]))
                    for line in lines:
                        self._loop.call_soon_threadsafe(put, line)
                    parts, size = [rest], len(rest)
                else:
                    parts.append(text)
                    size += len(text)
                if size > limit:
                    end = _TOO_LONG
                    break
            if end is None:
                parts.append(decoder.decode(b"", final=True))
        except (OSError, RuntimeError):  # stdin closed, or the loop is gone at exit
            pass
        try:
            buf = "".join(parts) if end is None else ""
            if buf:
                self._loop.call_soon_threadsafe(put, buf)
            self._loop.call_soon_threadsafe(put, end)
        except RuntimeError:
            pass

    async def read(self, continuation: bool = False) -> str:
        if self._prompt and not continuation:
            sys.stdout.write(self._prompt)
            sys.stdout.flush()
        line = await self._queue.get()
        if line is None or line is _TOO_LONG:
            self._queue.put_nowait(line)
            if line is _TOO_LONG:
                raise common.too_much_input(self._limit)
            raise EOFError
        return line.rstrip("\r")


class PromptReader:
    """prompt_toolkit line editing. Enter sends, Alt-Enter (Esc Enter) inserts a new line, and so
    does Enter inside an open \"\"\" block. History persists in `$DSK_HOME/chat_history` (private to
    the user: it holds prompts), or only in memory when that file cannot be written."""

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.key_binding import KeyBindings

        kb = KeyBindings()

        @kb.add("enter")
        def _enter(event: Any) -> None:
            buf = event.current_buffer
            if open_block(buf.text):
                buf.insert_text("\n")
            else:
                buf.validate_and_handle()

        @kb.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        def continuation(width: int, line_number: int, wrap_count: int) -> str:
            return "." * (width - 1) + " "

        self._session: Any = PromptSession(history=_history(), multiline=True, key_bindings=kb,
                                           prompt_continuation=continuation)

    async def read(self, continuation: bool = False) -> str:
        result: str = await self._session.prompt_async("> ")
        return result


def _history() -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    from deepseek_kit.config import home_dir

    path = home_dir() / "chat_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def open_block(text: str) -> bool:
    """True when `text` opened a \"\"\" block that is not closed yet."""
    t = text.strip()
    return t.startswith(FENCE) and not (len(t) >= 2 * len(FENCE) and t.endswith(FENCE))


async def read_message(reader: Any) -> tuple[str, bool]:
    """One message and whether it is literal: a line, or a \"\"\" block over several lines (its
    fences and surrounding blank lines removed; literal: never a command). EOF inside a block ends
    the block; the next read raises EOFError."""
    text: str = await reader.read()
    if not text.strip().startswith(FENCE):
        return text, False
    while open_block(text):
        try:
            text += "\n" + await reader.read(continuation=True)
        except EOFError:
            text += "\n" + FENCE
    body = text.strip()[len(FENCE):]
    body = body[:-len(FENCE)] if body.endswith(FENCE) else body
    return body.strip("\n"), True


# ---------------------------------------------------------------------------------------------
# Session


def run(args: argparse.Namespace) -> int:
    with common.backend(args, fallback=common.may_fall_back("chat")) as b:
        return common.run_async(lambda: _chat(args, b))


def _policy(args: argparse.Namespace) -> list[Any]:
    from deepseek_kit import SlidingWindow, Summarize, TokenBudget

    policies: list[Any] = []
    if args.summarize:
        policies.append(Summarize())
    if args.window:
        policies.append(SlidingWindow(args.window))
    if args.budget:
        policies.append(TokenBudget(args.budget))
    return policies


async def _answer(st: ChatState, text: str, got: tuple[list[str], list[str]]) -> Any:
    """Stream one turn into the renderer, keeping what arrived in `got` (content, reasoning) for a
    turn Ctrl-C cuts short; returns the final ChatCompletion (the turn is then in the history:
    Conversation commits it when the answer is complete)."""
    r = st.r
    content, reasoning = got
    async with st.conv.stream(text) as s:
        async for chunk in s:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.reasoning_content:
                reasoning.append(delta.reasoning_content)
                r.think(delta.reasoning_content)
            if delta.content:
                content.append(delta.content)
                r.say(delta.content)
    return s.get_final_completion()


def _renderer(args: argparse.Namespace) -> Any:
    from .chat_render import PlainRenderer, RichRenderer

    if _tty(sys.stdout):
        try:
            return RichRenderer(expand_reasoning=args.show_reasoning)
        except ImportError:  # installed without the [cli] extra
            pass
    return PlainRenderer(args.show_reasoning)


def _reader(interactive: bool) -> Any:
    if interactive:
        try:
            return PromptReader()
        except ImportError:  # installed without the [cli] extra: plain lines, still a prompt
            return LineReader(prompt="> ")
    return LineReader()


async def _chat(args: argparse.Namespace, b: common.Backend) -> int:
    import asyncio

    from deepseek_kit import Conversation, DeepSeekError, UsageError

    from .chat_commands import ChatState, is_command, run_command

    interactive = _tty(sys.stdin) and _tty(sys.stdout)
    r = _renderer(args)
    async with common.make_client(b, args) as client:
        try:
            conv = Conversation(client, system=args.system, model=b.model, policy=_policy(args),
                                preset=args.preset, thinking=args.think)
        except UsageError as exc:
            raise common.CLIError(str(exc)) from None
        st = ChatState(conv, r, keep=store.enabled(b, args))
        if args.resume:
            st.load(args.resume)
            store.apply_command_line(st.conv, args, b.model)
        reader = _reader(interactive)
        where = "the built-in emulator (synthetic answers)" if b.synthetic else b.base_url
        r.banner(f"dsk chat: {st.conv.model} at {where}. /help for commands; exit, quit or Ctrl-D to leave.")
        if args.resume:
            turns = sum(1 for m in st.conv.history if m.get("role") == "user")
            r.info(f"(resumed {st.conversation_id}: {st.title or 'untitled'}, {turns} turns)")
        while not st.done:
            try:
                line, literal = await read_message(reader)
            except EOFError:
                break
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, like a shell
                continue
            text = line.strip()
            if not text:
                continue
            if text.lower() in EXIT_WORDS and not literal:
                break
            if is_command(text) and not literal:
                try:
                    run_command(st, text)
                except (common.CLIError, UsageError) as exc:
                    print(common.error_line(exc, (b.api_key,)), file=sys.stderr, flush=True)
                    if not interactive:
                        return common.EXIT_USAGE
                continue
            if text.startswith("//") and not literal:
                line = line.lstrip()[1:]
            r.start()
            got: tuple[list[str], list[str]] = ([], [])
            task = asyncio.ensure_future(_answer(st, line, got))
            finished = await common.interruptible(task)
            if not finished:
                r.end(interrupted=True)
                if got[0] or got[1]:  # the partial turn stays, marked interrupted (store.py)
                    store.keep_partial(st.stored, line, "".join(got[0]), "".join(got[1]))
                    st.autosave()
                continue
            failure = task.exception()
            if failure is None:
                usage = task.result().usage
                r.end(reasoning_tokens=usage.reasoning_tokens if usage is not None else 0)
                st.autosave()
                continue
            r.end()
            if not isinstance(failure, DeepSeekError):
                raise failure
            print(common.error_line(failure, (b.api_key,)), file=sys.stderr, flush=True)
            if not interactive:
                return common.EXIT_USAGE if isinstance(failure, UsageError) else common.EXIT_API
    return 0
