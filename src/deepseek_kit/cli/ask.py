"""`dsk ask`: one question, one answer, streamed to stdout.

The prompt comes from the arguments, or from stdin when it is piped; with both, stdin is appended
as context. Stdin is read up to DSK_MAX_INPUT_MB (default 16 MB, `common.max_input_bytes`) and
must be UTF-8: `dsk ask < /dev/zero` or a binary file is a one-line error, not a runaway process.
Only the answer goes to stdout (so `dsk ask ... > file` and pipes get clean text); reasoning
goes to stderr, dimmed, when stderr is a terminal or with --show-reasoning.
`--json` prints the final ChatCompletion as one JSON object instead.

`--preset NAME` applies one of DeepSeek's recommended settings (`_wire/presets.py`: the temperature for
the task, thinking off; an explicit --think/--no-think still wins). `--tools FILE.py` offers the
file's `@tool` functions to the model and runs the tool loop (`ask_tools.py`): calls and results
are shown on stderr, the final answer streams to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import common

__all__ = ["add_parser", "run"]

HELP = "ask one question; the answer streams to stdout"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "ask", help=HELP, description=HELP + ". Reads the question from stdin when it is piped; "
        "with a question as well, stdin is appended as context.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  dsk ask "What is 2+2?"\n  git diff | dsk ask "Write a commit message"\n'
               '  dsk ask --preset coding "Write a Python function that reverses a list"\n'
               '  dsk ask --tools tools.py "What is the weather in Paris?"')
    p.add_argument("prompt", nargs="*", help="the question (words are joined with spaces)")
    common.add_client_options(p)
    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer, then print it")
    p.add_argument("--json", action="store_true",
                   help="print the final ChatCompletion as one JSON object")
    p.add_argument("--no-stdin", action="store_true", help="do not read stdin even when it is piped")
    p.add_argument("--preset", metavar="NAME",
                   help="DeepSeek's recommended settings for a task: coding, math, data, conversation, "
                        "translation, creative (sets the temperature, turns thinking off)")
    p.add_argument("--tools", metavar="FILE.py",
                   help="offer the @tool functions of this Python file to the model and run the calls it "
                        "makes (shown on stderr) until it answers")
    p.add_argument("--max-steps", type=_steps, default=8, metavar="N",
                   help="with --tools: at most N model calls (default 8)")
    p.set_defaults(func=run)
    return p


def _steps(text: str) -> int:
    n = common._non_negative_int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return n


def _read_stdin() -> str:
    """Piped stdin, at most `common.max_input_bytes()` of UTF-8 (more, or other bytes: an error)."""
    stdin = sys.stdin
    if stdin is None:
        return ""
    try:
        if stdin.isatty():
            return ""
    except (AttributeError, ValueError):
        return ""
    limit = common.max_input_bytes()
    raw = getattr(stdin, "buffer", None)
    data: bytes | str = raw.read(limit + 1) if raw is not None else stdin.read(limit + 1)
    if len(data) > limit:
        raise common.too_much_input(limit)
    return common.utf8_text(data, "stdin")


def build_prompt(args: argparse.Namespace) -> str:
    question = common.utf8_text(" ".join(args.prompt), "the question").strip()
    piped = "" if args.no_stdin else _read_stdin()
    if question and piped.strip():
        return f"{question}\n\n{piped.rstrip()}"
    text = question or piped.strip()
    if not text:
        raise common.CLIError("no question: give one as an argument or pipe it to stdin")
    return text


def request_kwargs(b: common.Backend, args: argparse.Namespace) -> dict[str, Any]:
    """`create()` arguments: the preset's, then the command line's (an explicit --think wins)."""
    kw = common.request_kwargs(b, args)
    if args.preset:
        from deepseek_kit import preset

        kw = {**preset(args.preset), **kw}
    return kw


def run(args: argparse.Namespace) -> int:
    tools = None
    if args.tools:
        from .ask_tools import load_tools

        tools = load_tools(args.tools)
    if args.preset:
        from deepseek_kit import preset

        preset(args.preset)  # an unknown name is an error before anything starts
    prompt = build_prompt(args)
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    with common.backend(args, fallback=common.may_fall_back("ask")) as b:
        return common.run_async(lambda: _ask(args, b, messages, tools))


async def _ask(args: argparse.Namespace, b: common.Backend, messages: list[dict[str, Any]],
               tools: list[Any] | None) -> int:
    out = sys.stdout
    reasoning = common.ReasoningWriter(args.show_reasoning)
    quiet = bool(args.json)
    async with common.make_client(b, args) as client:
        kw = request_kwargs(b, args)
        wrote = ""
        if tools is not None:
            from .ask_tools import run_with_tools

            completion = await run_with_tools(args, client, messages, kw, tools)
            wrote = "\n"
        elif args.no_stream:
            completion = await client.chat.completions.create(messages=messages, **kw)
            if not quiet and completion.choices:
                msg = completion.choices[0].message
                reasoning.write(msg.reasoning_content or "")
                reasoning.end()
                wrote = msg.content or ""
                out.write(common.for_stream(wrote, out))
        else:
            stream = await client.chat.completions.create(messages=messages, stream=True, **kw)
            try:
                async with stream:
                    async for chunk in stream:
                        if quiet or not chunk.choices:
                            continue
                        delta = chunk.choices[0].delta
                        if delta.reasoning_content:
                            reasoning.write(delta.reasoning_content)
                        if delta.content:
                            reasoning.end()
                            out.write(common.for_stream(delta.content, out))
                            out.flush()
                            wrote = delta.content
            finally:
                reasoning.end()
                if wrote and not wrote.endswith("\n"):
                    out.write("\n")
                    out.flush()
                    wrote = "\n"
            completion = stream.get_final_completion()
        if quiet:
            out.write(completion.to_json() + "\n")
        elif wrote and not wrote.endswith("\n"):
            out.write("\n")
        out.flush()
        finish = completion.choices[0].finish_reason if completion.choices else None
        if not quiet and finish in ("length", "insufficient_system_resource", "content_filter"):
            print(f"dsk: warning: the answer is incomplete (finish_reason: {finish})", file=sys.stderr)
    return 0
