"""The chat's terminal renderer on real rich consoles: markdown, reasoning collapsed to one line
(or kept with --show-reasoning), and answers taller than the terminal scrolling without losing or
repeating a line."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.markdown import Markdown

from deepseek_kit.cli.chat_render import RichRenderer

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def file_console(height: int = 12) -> tuple[Console, io.StringIO]:
    """A console that is not a terminal: rich's Live then prints only final results, so the
    output is exactly what stays on the screen (the scrollback)."""
    buf = io.StringIO()
    return Console(file=buf, width=60, height=height, force_terminal=False, color_system=None,
                   highlight=False), buf


def turn(r: RichRenderer, reasoning: list[str], answer: list[str], **end) -> None:
    r.start()
    for piece in reasoning:
        r.think(piece)
    for piece in answer:
        r.say(piece)
    r.end(**end)


def test_markdown_is_rendered_on_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, width=60, height=30, force_terminal=True, color_system="standard")
    turn(RichRenderer(console=console), [], ["# Title\n\nSome **bo", "ld** and `code`\n\n- one\n- two\n"])
    raw = buf.getvalue().split("\x1b[2K")[-1]  # the final frame: after the last erased line
    text = ANSI.sub("", raw)
    assert "**" not in text and "# Title" not in text and "`code`" not in text
    assert "\x1b[1mbold\x1b[0m" in raw  # bold, as markdown asked
    assert "• one" in text and "• two" in text


def test_reasoning_collapses_to_one_line_with_the_billed_count():
    console, buf = file_console()
    r = RichRenderer(console=console)
    turn(r, ["Let me think ", "about the sky."], ["It is **blue**."], reasoning_tokens=42)
    out = buf.getvalue()
    assert out.splitlines()[0].rstrip() == "thought for 42 tokens (/think show)"
    assert "It is blue." in out and "sky" not in out
    assert r.last_reasoning == "Let me think about the sky."
    r.show_reasoning(r.last_reasoning)  # /think show
    assert buf.getvalue().endswith("Let me think about the sky.\n")


def test_show_reasoning_option_keeps_it_expanded():
    console, buf = file_console()
    turn(RichRenderer(console=console, expand_reasoning=True), ["Pondering."], ["Done."], reasoning_tokens=3)
    lines = [line.rstrip() for line in buf.getvalue().splitlines() if line.strip()]
    assert lines == ["Pondering.", "Done."]


def test_interrupted_while_thinking_says_so_with_an_estimate():
    console, buf = file_console()
    turn(RichRenderer(console=console), ["x" * 100], [], interrupted=True)
    out = buf.getvalue()
    # DeepSeek's ratio (0.3 token per character, docs/deepseek-api-notes.md#token-counting): ~30 tokens.
    assert [line.rstrip() for line in out.splitlines()[:2]] == [
        "thought for ~30 tokens, interrupted (/think show)",
        "[interrupted]",
    ]


def test_a_long_answer_scrolls_without_losing_or_repeating_lines():
    console, buf = file_console(height=10)
    answer = "".join(f"- item number {i}\n" for i in range(60))
    pieces = [answer[i:i + 7] for i in range(0, len(answer), 7)]
    turn(RichRenderer(console=console), [], pieces)
    expected = Console(file=io.StringIO(), width=60, color_system=None)
    with expected.capture() as cap:
        expected.print(Markdown(answer))
    want = [line.rstrip() for line in cap.get().splitlines() if line.strip()]
    got = [line.rstrip() for line in buf.getvalue().splitlines() if line.strip()]
    assert got == want and len(got) == 60
