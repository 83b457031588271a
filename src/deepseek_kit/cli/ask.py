"""`dsk ask`: one question, one answer, streamed to stdout.

The prompt comes from the arguments, or from stdin when it is piped; with both, stdin is appended
as context. Stdin is read up to DSK_MAX_INPUT_MB (default 16 MB, `common.max_input_bytes`) and
must be UTF-8: `dsk ask < /dev/zero` or a binary file is a one-line error, not a runaway process.
Only the answer goes to stdout (so `dsk ask ... > file` and pipes get clean text); reasoning
goes to stderr, dimmed, when stderr is a terminal or with --show-reasoning.
`--json` prints the final ChatCompletion as one JSON object instead.

Every question and answer is stored as a conversation (`store.py`: the logs database, unless
logging is off), so `dsk ask -c "follow-up"` (or `dsk -c "..."`) continues the most recent
conversation of `dsk ask` or `dsk chat`, and `--cid ID` a chosen one. `-u` prints usage and cost to
stderr; `-x` prints only the first fenced code block (`ask_output.py`). Ctrl-C during a streamed
answer stops it, keeps the partial turn (marked interrupted, with its estimated cost) in the
conversation, and exits with status 130: what was printed stays printed, once.

`--preset NAME` applies one of DeepSeek's recommended settings (`_wire/presets.py`: the temperature for
the task, thinking off; an explicit --think/--no-think still wins). `--tools FILE.py` offers the
file's `@tool` functions to the model and runs the tool loop (`ask_tools.py`): calls and results
are shown on stderr, the final answer streams to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from . import common, store
from .ask_output import EXIT_NO_CODE

if TYPE_CHECKING:
    from deepseek_kit import ChatCompletion

__all__ = ["add_parser", "run"]

HELP = "ask one question; the answer streams to stdout"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "ask", help=HELP, description=HELP + ". Reads the question from stdin when it is piped; "
        "with a question as well, stdin is appended as context.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  dsk ask "What is 2+2?"\n  git diff | dsk ask "Write a commit message"\n'
               '  dsk ask --preset coding "Write a Python function that reverses a list"\n'
               '  dsk ask --tools tools.py "What is the weather in Paris?"\n'
               '  dsk ask -c "And in Python 2?"        (continue the last conversation)\n'
               '  dsk ask -u -x "Write a bash one-liner that counts lines" > count.sh')
    p.add_argument("prompt", nargs="*", help="the question (words are joined with spaces)")
    g = p.add_argument_group("conversation and output")
    g.add_argument("-c", "--continue", dest="cont", action="store_true",
                   help="continue the last conversation (the latest of dsk ask and dsk chat)")
    g.add_argument("--cid", metavar="ID",
                   help="continue this conversation (an id or a unique prefix; dsk chat's /load lists them)")
    g.add_argument("-u", "--usage", action="store_true",
                   help="print tokens and cost to stderr after the answer (peak or off-peak price)")
    g.add_argument("-x", "--extract", action="store_true",
                   help="print only the content of the first fenced code block of the answer "
                        f"(none: exit status {EXIT_NO_CODE})")
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


def run(args: argparse.Namespace) -> int:
    if args.extract and args.json:
        raise common.CLIError("-x and --json do not go together: -x prints the code block, --json the "
                              "whole completion")
    tools = None
    if args.tools:
        from .ask_tools import load_tools

        tools = load_tools(args.tools)
    if args.preset:
        from deepseek_kit import preset

        preset(args.preset)  # an unknown name is an error before anything starts
    prompt = build_prompt(args)
    with common.backend(args, fallback=common.may_fall_back("ask")) as b:
        return common.run_async(lambda: _ask(args, b, prompt, tools))


def _conversation(args: argparse.Namespace, b: common.Backend, client: Any) -> store.Stored:
    """A new conversation, or the one -c / --cid continues (the command line's options win over
    its saved settings, as with `dsk chat --resume`)."""
    from deepseek_kit import Conversation, UsageError

    try:
        conv = Conversation(client, system=args.system, model=b.model, preset=args.preset,
                            thinking=args.think)
    except UsageError as exc:
        raise common.CLIError(str(exc)) from None
    ref = args.cid or (store.LAST if args.cont else None)
    if ref is None:
        return store.Stored(conv, source="ask")
    st = store.load(ref, conv, none_yet="there is no conversation to continue yet: dsk ask or dsk chat "
                                        "starts one")
    store.apply_command_line(st.conv, args, b.model)
    return st


class _Shown:
    """The answer as it arrives: printed to stdout (unless buffered for -x or --json) and kept, so
    that a turn cut short stores exactly the text that was shown."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.print = not (args.json or args.extract)
        # With -x the reasoning still goes to stderr (a terminal, or --show-reasoning): something
        # to watch while the answer is buffered.
        self.show_thinking = not args.json
        self.reasoning = common.ReasoningWriter(args.show_reasoning)
        self.content: list[str] = []
        self.thought: list[str] = []
        self.last = ""

    def think(self, text: str) -> None:
        self.thought.append(text)
        if self.show_thinking:
            self.reasoning.write(text)

    def say(self, text: str) -> None:
        self.content.append(text)
        if self.print:
            self.reasoning.end()
            out = sys.stdout
            out.write(common.for_stream(text, out))
            out.flush()
            self.last = text

    def end(self) -> None:
        """The answer is over (or cut short): close the reasoning, end the line."""
        self.reasoning.end()
        if self.last and not self.last.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.last = "\n"


async def _read(s: Any, shown: _Shown) -> None:
    async with s:
        async for chunk in s:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.reasoning_content:
                shown.think(delta.reasoning_content)
            if delta.content:
                shown.say(delta.content)


async def _ask(args: argparse.Namespace, b: common.Backend, prompt: str, tools: list[Any] | None) -> int:
    from decimal import Decimal

    keep = store.enabled(b, args)
    async with common.make_client(b, args) as client:
        st = _conversation(args, b, client)
        conv = st.conv
        spent = conv.usage.cost
        if tools is not None:
            completion = await _with_tools(args, client, st, prompt, tools)
        elif args.no_stream:
            completion = await conv.send(prompt)
            shown = _Shown(args)
            if completion.choices:
                msg = completion.choices[0].message
                shown.think(msg.reasoning_content or "")
                shown.say(msg.content or "")
            shown.end()
        else:
            finished = await _streamed(args, st, prompt, keep)
            if finished is None:
                return common.EXIT_INTERRUPTED
            completion = finished
        if keep:
            store.save_or_warn(st)
        cost = conv.usage.cost - spent if conv.usage.cost >= spent else Decimal(0)
        return _report(args, st, completion, cost, keep)


async def _streamed(args: argparse.Namespace, st: store.Stored, prompt: str,
                    keep: bool) -> ChatCompletion | None:
    """Stream the answer; None when Ctrl-C cut it short (the partial turn is then kept)."""
    import asyncio

    conv = st.conv
    shown = _Shown(args)
    s = conv.stream(prompt)
    task = asyncio.ensure_future(_read(s, shown))
    try:
        finished = await common.interruptible(task)
    finally:
        shown.end()
    if finished:
        task.result()  # an API error propagates: one error line
        final: ChatCompletion = s.get_final_completion()
        return final
    _interrupted(args, st, prompt, shown, keep)
    return None


def _interrupted(args: argparse.Namespace, st: store.Stored, prompt: str, shown: _Shown,
                 keep: bool) -> None:
    content, thought = "".join(shown.content), "".join(shown.thought)
    err = sys.stderr
    if not (content or thought):
        print("dsk: interrupted before the answer started; nothing kept", file=err, flush=True)
        return
    cut = store.keep_partial(st, prompt, content, thought)
    if args.usage:
        from deepseek_kit import is_peak

        from .ask_output import usage_line

        print(usage_line(cut.prompt_tokens, 0, cut.prompt_tokens, cut.completion_tokens,
                         cut.reasoning_tokens, cut.cost, cut.currency, peak=is_peak(), estimated=True),
              file=err)
    cid = store.save_or_warn(st) if keep else None
    if cid is not None:
        print(f"dsk: interrupted: the partial answer is kept in conversation {cid} "
              f"(dsk -c continues it)", file=err, flush=True)
    elif keep:
        print("dsk: interrupted", file=err, flush=True)
    else:
        print("dsk: interrupted (logging is off: the partial answer is not stored)", file=err, flush=True)


async def _with_tools(args: argparse.Namespace, client: Any, st: store.Stored, prompt: str,
                      tools: list[Any]) -> ChatCompletion:
    """The tool loop over the conversation's messages; the question and the final answer join the
    conversation (the tool rounds in between stay in the request log)."""
    from .ask_tools import run_with_tools

    conv = st.conv
    completion: ChatCompletion = await run_with_tools(args, client, conv.messages(prompt),
                                                      conv.request_kwargs(), tools)
    conv.append({"role": "user", "content": prompt})
    if completion.choices:
        conv.append(completion.choices[0].message)
    conv.usage.add(conv.model, completion.usage)
    return completion


def _report(args: argparse.Namespace, st: store.Stored, completion: ChatCompletion, cost: Any,
            keep: bool) -> int:
    """After the answer: --json, -x, -u and the incomplete-answer warning."""
    out, err = sys.stdout, sys.stderr
    code = 0
    if args.json:
        out.write(completion.to_json() + "\n")
    elif args.extract:
        from .ask_output import first_code_block

        text = (completion.choices[0].message.content or "") if completion.choices else ""
        block = first_code_block(text)
        if block is None:
            kept = keep and st.id
            where = f" (the answer is kept in conversation {st.id}; dsk -c continues it)" if kept else ""
            print(f"dsk: error: the answer has no fenced code block{where}", file=err)
            code = EXIT_NO_CODE
        else:
            out.write(block)
    out.flush()
    if args.usage:
        from deepseek_kit import is_peak

        from .ask_output import usage_of

        print(usage_of(completion.usage, cost, st.conv.usage.currency, peak=is_peak()), file=err)
    finish = completion.choices[0].finish_reason if completion.choices else None
    if not args.json and finish in ("length", "insufficient_system_resource", "content_filter"):
        print(f"dsk: warning: the answer is incomplete (finish_reason: {finish})", file=err)
    return code
