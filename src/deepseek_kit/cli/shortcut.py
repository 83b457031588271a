"""`dsk "question"`: the shortcut for `dsk ask "question"`, as in simonw's llm.

When the first argument is not a command, `dsk` runs `ask` with all the arguments: `dsk "Why is
the sky blue?"`, `dsk -c "And at sunset?"`, `dsk -u -x "Write a bash loop"`. A typo of a command
must not silently become a question (`dsk bach run prompts.jsonl` would ask DeepSeek about
"bach" and bill for it): a first argument that is one word close to a command name is an error
that says "did you mean". Closeness is difflib's ratio (stdlib, the measure argparse itself uses
for its suggestions) at 0.75 or more, which catches one wrong, missing, extra or swapped letter in
the command names dsk has, while real one-word questions rarely come that close.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from . import common

__all__ = ["CUTOFF", "TOP_LEVEL_OPTIONS", "rewrite"]

#: Options of `dsk` itself; every other leading option belongs to `dsk ask`.
TOP_LEVEL_OPTIONS = frozenset({"-h", "--help", "--version"})
CUTOFF = 0.75


def rewrite(argv: Sequence[str], commands: Collection[str]) -> list[str]:
    """`argv` with "ask" put in front when it does not start with a command or a `dsk` option;
    CLIError when the first argument looks like a mistyped command."""
    args = list(argv)
    if not args:
        return args
    first = args[0]
    if first in commands or first in TOP_LEVEL_OPTIONS or first == "--":
        return args
    if not first.startswith("-") and len(first.split()) == 1:
        import difflib  # only here: every `dsk` run passes through this function

        close = difflib.get_close_matches(first.lower(), sorted(commands), n=1, cutoff=CUTOFF)
        if close:
            raise common.CLIError(f"unknown command {first!r}: did you mean 'dsk {close[0]}'? "
                                  f"(to ask it as a question: dsk ask {first})")
    return ["ask", *args]
