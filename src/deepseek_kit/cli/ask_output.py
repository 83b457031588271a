"""What `dsk ask` prints besides the answer: `-u` (usage and cost, on stderr so stdout stays
pipeable) and `-x` (only the first fenced code block of the answer).

`-x` buffers the answer and prints the block once the answer is complete: a fence can only be
told from text about fences once it is closed, and `dsk ask -x ... > script.py` must never leave
half a block behind. The block is found by markdown-it-py (the CommonMark parser rich uses), so
``` and ~~~ fences, longer fences around shorter ones, and fences inside lists or quotes all read
as a Markdown renderer reads them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from . import common

if TYPE_CHECKING:
    from deepseek_kit import Usage

__all__ = ["EXIT_NO_CODE", "first_code_block", "usage_line", "usage_of"]

#: `dsk ask -x` when the answer holds no fenced code block (1 is an API or connection error).
EXIT_NO_CODE = 3

_SIGNS = {"CNY": "¥", "USD": "$"}


def first_code_block(text: str) -> str | None:
    """The content of the first fenced code block of a Markdown `text` (no fences), or None."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # installed without the [cli] extra
        raise common.CLIError("dsk ask -x needs markdown-it-py: pip install 'deepseek-kit[cli]'") from None
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "fence":
            return token.content
    return None


def usage_of(usage: Usage | None, cost: Decimal, currency: str, *, peak: bool) -> str:
    """`usage_line` for a response's `usage` (hits and misses as DeepSeek reports them)."""
    if usage is None:
        sign = _SIGNS.get(currency, currency + " ")
        return f"dsk: usage: the server reported no usage; cost {sign}{cost:.6f}"
    hit = usage.prompt_cache_hit_tokens or 0
    miss = usage.prompt_cache_miss_tokens
    miss = usage.prompt_tokens - hit if miss is None else miss
    return usage_line(usage.prompt_tokens, hit, miss, usage.completion_tokens, usage.reasoning_tokens,
                      cost, currency, peak=peak)


def usage_line(prompt: int, hit: int, miss: int, completion: int, reasoning: int, cost: Decimal,
               currency: str, *, peak: bool, estimated: bool = False) -> str:
    """One stderr line: tokens in and out, cache hits and misses, reasoning, and the cost, saying
    whether DeepSeek's peak price (double the off-peak one) applied."""
    sign = _SIGNS.get(currency, currency + " ")
    when = "peak price" if peak else "off-peak price"
    head = "dsk: usage (estimated, the answer was cut short): " if estimated else "dsk: usage: "
    return (f"{head}{prompt:,} prompt tokens ({hit:,} cache hit, {miss:,} miss) + {completion:,} "
            f"completion ({reasoning:,} reasoning) = {prompt + completion:,} tokens; cost {sign}{cost:.6f} "
            f"at the {when} (Beijing time; peak, Mon-Fri 09:00-12:00 and 14:00-18:00, costs double)")
