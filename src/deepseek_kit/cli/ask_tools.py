"""`dsk ask --tools FILE.py`: load the `@tool` functions of a Python file and run the tool loop.

The file is imported as a module of its own (its directory first on `sys.path`, so it can import
its neighbours); every `deepseek_kit.Tool` object at its top level is offered to the model, in the
order the file defines them, which is what `@tool` makes of a function. The loop is
`deepseek_kit.run_tools`: it runs the calls (concurrently when the model asks for several), feeds
results and errors back, and sends reasoning_content back verbatim (docs/deepseek-api-notes.md#thinking-mode).

Only the answer goes to stdout. Each tool call and its result go to stderr as they happen, one line
each (results shortened), so `dsk ask --tools t.py "..." > answer.txt` still gets a clean answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import common

if TYPE_CHECKING:
    from deepseek_kit import Tool

__all__ = ["load_tools", "run_with_tools"]

SHOWN = 200  # characters of a tool's arguments or result shown on stderr


def load_tools(path: str) -> list[Tool[Any, Any]]:
    """The Tool objects defined at the top level of the Python file `path`."""
    import importlib.util
    import re

    from deepseek_kit import Tool

    p = Path(path).expanduser()
    if not p.is_file():
        raise common.CLIError(f"--tools {path}: no such file")
    name = "dsk_tools_" + re.sub(r"\W", "_", p.stem)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise common.CLIError(f"--tools {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic look their module up while it runs
    sys.path.insert(0, str(p.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise common.CLIError(f"--tools {path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # whatever the user's file raises while it loads
        raise common.CLIError(f"--tools {path}: loading it raised {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(p.resolve().parent))
    tools: list[Tool[Any, Any]] = []
    for value in vars(module).values():
        if isinstance(value, Tool) and all(value is not t for t in tools):
            tools.append(value)
    if not tools:
        raise common.CLIError(f"--tools {path}: no tools in it (decorate functions with "
                              "@tool: from deepseek_kit import tool)")
    return tools


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


async def run_with_tools(args: argparse.Namespace, client: Any, messages: list[dict[str, Any]],
                         kw: dict[str, Any], tools: list[Tool[Any, Any]]) -> Any:
    """Run the loop, streaming the answer to stdout and the calls to stderr; returns the final
    ChatCompletion."""
    from deepseek_kit import (
        ContentDelta,
        Final,
        ReasoningDelta,
        StepFinished,
        ToolCallStarted,
        ToolError,
        ToolResult,
        run_tools,
    )

    out, err = sys.stdout, sys.stderr
    quiet = bool(args.json or args.extract)  # -x prints the final answer's code block only
    reasoning = common.ReasoningWriter(args.show_reasoning)
    kw = dict(kw)
    model = kw.pop("model")
    wrote = ""
    final = None
    try:
        async for ev in run_tools(client, messages, tools, model=model, max_steps=args.max_steps,
                                  stream=not args.no_stream, **kw):
            if isinstance(ev, ReasoningDelta):
                if not quiet:
                    reasoning.write(ev.text)
            elif isinstance(ev, ContentDelta):
                if not quiet:
                    reasoning.end()
                    out.write(ev.text)
                    out.flush()
                    wrote = ev.text
            elif isinstance(ev, ToolCallStarted):
                reasoning.end()
                if wrote and not wrote.endswith("\n"):  # text the model wrote before calling
                    out.write("\n")
                    wrote = "\n"
                print(f"[tool] {ev.name} {_short(ev.arguments or '{}')}", file=err, flush=True)
            elif isinstance(ev, ToolResult):
                print(f"[tool] {ev.name} -> {_short(ev.content)}", file=err, flush=True)
            elif isinstance(ev, ToolError):
                print(f"[tool] {ev.name} failed: {_short(ev.content)}", file=err, flush=True)
            elif isinstance(ev, StepFinished):
                reasoning.end()
            elif isinstance(ev, Final):
                final = ev.completion
    finally:
        reasoning.end()
        if wrote and not wrote.endswith("\n"):
            out.write("\n")
        out.flush()
    return final
