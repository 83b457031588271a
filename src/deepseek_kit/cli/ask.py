"""`dsk ask`: one question, one answer, streamed to stdout.

The prompt comes from the arguments, or from stdin when it is piped; with both, stdin is appended
as context. Only the answer goes to stdout (so `dsk ask ... > file` and pipes get clean text);
reasoning goes to stderr, dimmed, when stderr is a terminal or with --show-reasoning.
`--json` prints the final ChatCompletion as one JSON object instead.
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
        epilog='examples:\n  dsk ask "What is 2+2?"\n  git diff | dsk ask "Write a commit message"')
    p.add_argument("prompt", nargs="*", help="the question (words are joined with spaces)")
    common.add_client_options(p)
    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer, then print it")
    p.add_argument("--json", action="store_true",
                   help="print the final ChatCompletion as one JSON object")
    p.add_argument("--no-stdin", action="store_true", help="do not read stdin even when it is piped")
    p.set_defaults(func=run)
    return p


def _read_stdin() -> str:
    stdin = sys.stdin
    if stdin is None:
        return ""
    try:
        if stdin.isatty():
            return ""
    except (AttributeError, ValueError):
        return ""
    return stdin.read()


def build_prompt(args: argparse.Namespace) -> str:
    question = " ".join(args.prompt).strip()
    piped = "" if args.no_stdin else _read_stdin()
    if question and piped.strip():
        return f"{question}\n\n{piped.rstrip()}"
    text = question or piped.strip()
    if not text:
        raise common.CLIError("no question: give one as an argument or pipe it to stdin")
    return text


def run(args: argparse.Namespace) -> int:
    prompt = build_prompt(args)
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    with common.backend(args) as b:
        return common.run_async(lambda: _ask(args, b, messages))


async def _ask(args: argparse.Namespace, b: common.Backend, messages: list[dict[str, Any]]) -> int:
    out = sys.stdout
    reasoning = common.ReasoningWriter(args.show_reasoning)
    quiet = bool(args.json)
    async with common.make_client(b, args) as client:
        kw = common.request_kwargs(b, args)
        wrote = ""
        if args.no_stream:
            completion = await client.chat.completions.create(messages=messages, **kw)
            if not quiet and completion.choices:
                msg = completion.choices[0].message
                reasoning.write(msg.reasoning_content or "")
                reasoning.end()
                wrote = msg.content or ""
                out.write(wrote)
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
                            out.write(delta.content)
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
