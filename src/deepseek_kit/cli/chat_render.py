"""How `dsk chat` shows a turn: rich markdown on a terminal, plain text otherwise.

`RichRenderer` (stdout is a terminal) streams the answer as rendered markdown. It redraws one
`rich.live.Live` region, throttled (at least 50 ms apart, and never more often than 3x the time the
last render took, so long answers do not eat the CPU); the lines that no longer fit the window are
printed for good above it, so an answer taller than the terminal scrolls like text instead of
being redrawn from the top (a Live region cannot redraw what scrolled away). Reasoning (thinking
mode, docs/deepseek-api-notes.md#streaming-and-keep-alives: it streams before the answer) shows dimmed in the
region while it streams, only its last lines; when the answer starts it collapses to one line, "thought for N
tokens (/think show)", with N from the final `usage` (an estimate by DeepSeek's ratios until it
arrives). `/think show` prints the last reasoning in full; `--show-reasoning` keeps every
reasoning expanded instead.

`PlainRenderer` (stdout is a pipe or file) writes the answer text as it arrives, exactly, so
`dsk chat < script > answers.txt` gets only the answers; reasoning and everything the slash
commands print go to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from deepseek_kit import count_tokens

from . import common

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.segment import Segment

__all__ = ["PlainRenderer", "RichRenderer", "thought_line"]

MIN_DELAY = 0.05  # seconds between two redraws of the live region, at the least
REASONING_TAIL = 6  # lines of the streaming reasoning shown while it is collapsed


def thought_line(tokens: int, *, exact: bool, interrupted: bool = False) -> str:
    n = f"{tokens:,}" if exact else f"~{tokens:,}"
    tail = ", interrupted" if interrupted else ""
    return f"thought for {n} tokens{tail} (/think show)"


class PlainRenderer:
    """Answers as plain text on stdout; reasoning (with --show-reasoning, or when stderr is a
    terminal) and command output on stderr."""

    def __init__(self, show_reasoning: bool) -> None:
        self.out = sys.stdout
        self._safe = common._is_tty(self.out)  # only without rich: a terminal gets inert text
        self.reasoning = common.ReasoningWriter(show_reasoning)
        self.last_reasoning = ""
        self._reasoning: list[str] = []
        self._last = ""

    def banner(self, text: str) -> None:
        pass

    def info(self, text: str) -> None:
        print(common.for_stream(text, sys.stderr), file=sys.stderr, flush=True)

    output = info

    def show_reasoning(self, text: str) -> None:
        print(common.for_stream(text, sys.stderr), file=sys.stderr, flush=True)

    def start(self) -> None:
        self._last = ""
        self._reasoning = []

    def think(self, text: str) -> None:
        self._reasoning.append(text)
        self.reasoning.write(text)

    def say(self, text: str) -> None:
        self.reasoning.end()
        self.out.write(common.terminal_safe(text) if self._safe else text)
        self.out.flush()
        self._last = text

    def end(self, interrupted: bool = False, reasoning_tokens: int = 0) -> None:
        self.reasoning.end()
        if self._reasoning:
            self.last_reasoning = "".join(self._reasoning)
        if self._last and not self._last.endswith("\n"):
            self.out.write("\n")
        if interrupted:
            print("[interrupted]", file=sys.stderr, flush=True)
        self.out.flush()
        self._last = ""


class _Lines:
    """Already rendered lines (lists of segments) as a renderable."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        nl = Segment.line()
        for line in self.lines:
            yield from line
            yield nl


class RichRenderer:
    """Markdown streamed into a live region; reasoning dimmed, then collapsed (see module doc)."""

    def __init__(self, *, expand_reasoning: bool = False, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.expand = expand_reasoning
        self.last_reasoning = ""
        self._live: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self._reasoning: list[str] = []
        self._answer: list[str] = []
        self._flushed = 0  # lines of this turn printed for good above the live region
        self._last_render = 0.0
        self._delay = MIN_DELAY

    # -- plain lines --------------------------------------------------------------------------

    # Everything shown here goes to a terminal: text from the server (answers, reasoning, model
    # names, saved titles) passes through common.terminal_safe, since rich keeps escape sequences.

    def banner(self, text: str) -> None:
        self.console.print(common.terminal_safe(text), style="dim", markup=False, highlight=False)

    def info(self, text: str) -> None:
        self.console.print(common.terminal_safe(text), style="dim", markup=False, highlight=False)

    def output(self, text: str) -> None:
        self.console.print(common.terminal_safe(text), markup=False, highlight=False)

    def show_reasoning(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(common.terminal_safe(text.strip("\n")), style="dim italic"))

    # -- one turn -----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop_live()
        self._reset()

    def think(self, text: str) -> None:
        self._reasoning.append(common.terminal_safe(text))
        self._changed()

    def say(self, text: str) -> None:
        self._answer.append(common.terminal_safe(text))
        self._changed()

    def end(self, interrupted: bool = False, reasoning_tokens: int = 0) -> None:
        self._cancel_timer()
        reasoning = "".join(self._reasoning)
        if reasoning:
            self.last_reasoning = reasoning
        if self._live is not None or reasoning or self._answer:
            self._render(final=True, tokens=reasoning_tokens, interrupted=interrupted)
        self._stop_live()
        if interrupted:
            self.console.print("[interrupted]", style="yellow", markup=False, highlight=False)
        self.console.print()

    # -- drawing ------------------------------------------------------------------------------

    def _changed(self) -> None:
        """Redraw now, or schedule one redraw when the last was too recent (throttling)."""
        if self._timer is not None:
            return
        wait = self._last_render + self._delay - time.monotonic()
        if wait <= 0:
            self._render()
            return
        import asyncio

        try:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
        except RuntimeError:  # no loop (direct use in a test): draw now
            self._render()

    def _on_timer(self) -> None:
        self._timer = None
        self._render()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _document(self, final: bool, tokens: int, interrupted: bool) -> tuple[list[Any], bool]:
        """What the turn shows now, and whether it may scroll (lines flushed above the region)."""
        from rich.markdown import Markdown
        from rich.text import Text

        reasoning = "".join(self._reasoning)
        answer = "".join(self._answer)
        parts: list[Any] = []
        if reasoning and (self.expand or (not answer and not final)):
            parts.append(Text(reasoning.strip("\n"), style="dim italic"))
            if answer:
                parts.append(Text(""))
            if not self.expand:  # collapsed: only the tail, redrawn in place, never flushed
                return parts, False
        elif reasoning:
            exact = final and tokens > 0
            # exact=False: DeepSeek's ratios, the one offline estimate (never the slow tokenizer here)
            n = tokens if exact else count_tokens(reasoning, exact=False)
            parts.append(Text(thought_line(n, exact=exact, interrupted=interrupted and not answer),
                              style="dim"))
        if answer:
            parts.append(Markdown(answer))
        return parts, True

    def _render(self, final: bool = False, tokens: int = 0, interrupted: bool = False) -> None:
        from rich.console import Group
        from rich.live import Live

        started = time.monotonic()
        parts, scrolls = self._document(final, tokens, interrupted)
        width = self.console.width
        lines = self.console.render_lines(Group(*parts), self.console.options.update(width=width),
                                          pad=False)
        while lines and not any(seg.text.strip() for seg in lines[-1]):
            lines.pop()  # Markdown ends blocks with a blank line; the turn's end adds its own
        window = max(3, self.console.height - 3)
        if not scrolls:
            lines = lines[-min(window, REASONING_TAIL):]
        else:
            lines = lines[self._flushed:]
            if len(lines) > window and not final:
                stable, lines = lines[:-window], lines[-window:]
                self._flushed += len(stable)
                if self._live is not None:
                    self._live.console.print(_Lines(stable))
                else:
                    self.console.print(_Lines(stable))
        region = _Lines(lines)
        if self._live is None:
            self._live = Live(region, console=self.console, auto_refresh=False, transient=False,
                              vertical_overflow="visible", redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        self._live.update(region, refresh=True)
        self._last_render = time.monotonic()
        self._delay = max(MIN_DELAY, 3 * (self._last_render - started))

    def _stop_live(self) -> None:
        self._cancel_timer()
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()
            if not self.console.is_terminal:  # Live ends the last line itself only on a terminal
                self.console.line()
