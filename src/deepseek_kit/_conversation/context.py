"""Context policies: which part of a conversation's history goes into the next request.

Policies compose: `SlidingWindow(keep=5) | TokenBudget(8000)` (or a list) applies the first, then
the second to what the first kept. Every policy works on whole *rounds* - a user message and
everything after it up to the next user message (assistant turns, tool calls, tool results) - and
never on the *head* (the leading system messages: the system prompt and a summary). So no policy
ever drops the system prompt, separates an assistant tool-call turn from its tool results, or
starts the context with a tool result; and the current round is always sent.

Prompt-prefix stability (docs/deepseek-api-notes.md#context-caching): DeepSeek caches prompt prefixes on disk;
a request hits only on a prefix identical to an earlier request's, in 128-token units, and a hit
costs 1/50 of a miss (docs/deepseek-api-notes.md#pricing-and-off-peak-hours).
Dropping one old round per turn changes the prompt right after the
system prompt on every request, so everything after it misses every time. The policies here
therefore change the prefix rarely and in coarse steps:

* `SlidingWindow(keep=K, step=S)` (a "stepped window") sends the current round and between `keep` and
  `K + S - 1` earlier rounds: old rounds are dropped S at a time (default: `S = K`), so
  the prefix stays the same for `step` turns in a row. `step=1` is a plain window.
* `TokenBudget(max_tokens, drop_to=0.75)` drops oldest whole rounds only when the context passes
  `max_tokens`, and then down to `drop_to * max_tokens`, leaving room for several turns before the
  next drop. The first kept round is remembered, so between drops the prefix is unchanged.
* `Summarize(threshold_chars=2000, keep_rounds=2)` replaces the older turns by one summary
  (a system message right after the system prompt) when the unsummarized turns pass the threshold,
  and then leaves it alone until they pass it again: one prefix break per chunk, not per turn.
* Nothing here rewrites the system prompt; reasoning_content is stripped or kept by one fixed rule
  (see `_conversation/conversation.py`), so a message renders the same way in every request.

A policy has two halves: `select(turns, ctx)` (pure: what to send, given its saved state) and
`prepare(turns, ctx)` (async, before a request: may update that state, e.g. write a summary).
State lives in `ctx.state`, a plain dict the conversation saves with `to_dict()`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepseek_kit._wire.errors import DeepSeekError, UsageError, redact
from deepseek_kit._wire.tokens import PROMPT_OVERHEAD

from .summarize import Summarizer

__all__ = [
    "Chain",
    "ContextPolicy",
    "KeepAll",
    "PolicyContext",
    "SlidingWindow",
    "Summarize",
    "TokenBudget",
    "Turn",
    "Window",
    "as_policy",
    "split_rounds",
]

log = logging.getLogger("deepseek_kit.conversation")

#: Leads the summary, a system message placed right after the system prompt.
SUMMARY_PREFIX = "Summary of the earlier conversation:\n"


@dataclass(frozen=True)
class Turn:
    """One message with its position in the conversation's history (`seq`); messages a policy or
    the conversation synthesizes (system prompt, summary) have `seq = -1`."""

    seq: int
    message: Mapping[str, Any]

    @property
    def role(self) -> str:
        return str(self.message.get("role", ""))


@dataclass
class PolicyContext:
    """What a policy may use: its own persistent `state`, a token counter for one turn as it will be
    sent, and the conversation's default summarizer."""

    state: dict[str, Any] = field(default_factory=dict)
    count: Callable[[Turn], int] = lambda t: 0
    summarizer: Summarizer | None = None

    def child(self, key: str) -> PolicyContext:
        sub = self.state.setdefault(key, {})
        return PolicyContext(sub, self.count, self.summarizer)


def split_rounds(turns: Sequence[Turn]) -> tuple[list[Turn], list[list[Turn]]]:
    """(head, rounds): the leading system messages, then rounds that each start at a user message.
    Messages before the first user message (e.g. an assistant greeting) form a round of their own."""
    i = 0
    while i < len(turns) and turns[i].role == "system":
        i += 1
    head = list(turns[:i])
    rounds: list[list[Turn]] = []
    for t in turns[i:]:
        if t.role == "user" or not rounds:
            rounds.append([t])
        else:
            rounds[-1].append(t)
    return head, rounds


def _flat(head: list[Turn], rounds: Iterable[list[Turn]]) -> list[Turn]:
    out = list(head)
    for r in rounds:
        out.extend(r)
    return out


class ContextPolicy:
    """Base class: override `select` (and `prepare` if the policy keeps state). `a | b` chains."""

    async def prepare(self, turns: list[Turn], ctx: PolicyContext) -> None:
        """Called before each request with the full candidate context; may update `ctx.state`."""

    def select(self, turns: list[Turn], ctx: PolicyContext) -> list[Turn]:
        """The turns to send, a subsequence of `turns` (in order; new `Turn`s with `seq = -1` may
        be added, e.g. a summary). Called for every request, after `prepare`; keep it pure."""
        raise NotImplementedError

    def __or__(self, other: ContextPolicy | Sequence[ContextPolicy]) -> Chain:
        return Chain([self, *(_as_list(other))])

    def __ror__(self, other: Sequence[ContextPolicy]) -> Chain:
        return Chain([*_as_list(other), self])


def _as_list(p: Any) -> list[ContextPolicy]:
    if isinstance(p, Chain):
        return list(p.policies)
    if isinstance(p, ContextPolicy):
        return [p]
    if isinstance(p, (list, tuple)):
        out: list[ContextPolicy] = []
        for x in p:
            out += _as_list(x)
        return out
    raise UsageError(f"not a context policy: {p!r} (use SlidingWindow, TokenBudget, Summarize or a list)")


def as_policy(p: ContextPolicy | Sequence[ContextPolicy] | None) -> ContextPolicy:
    """A policy from a policy, a list of policies (applied in order) or None (keep everything)."""
    if p is None:
        return KeepAll()
    if isinstance(p, ContextPolicy):
        return p
    items = _as_list(p)
    return items[0] if len(items) == 1 else Chain(items)


class Chain(ContextPolicy):
    """Policies applied in order, each to what the previous one kept. Each keeps its state under
    its position ("0", "1", ...). `policies` is the list, in the order they apply; a list passed
    as a conversation's `policy=` becomes a `Chain` of its items.

        policy = Chain([SlidingWindow(keep=4), TokenBudget(60_000)])"""

    def __init__(self, policies: Iterable[ContextPolicy]) -> None:
        self.policies = _as_list(list(policies))

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.policies) or "Chain([])"

    async def prepare(self, turns: list[Turn], ctx: PolicyContext) -> None:
        for i, p in enumerate(self.policies):
            sub = ctx.child(str(i))
            await p.prepare(turns, sub)
            turns = p.select(turns, sub)

    def select(self, turns: list[Turn], ctx: PolicyContext) -> list[Turn]:
        for i, p in enumerate(self.policies):
            turns = p.select(turns, ctx.child(str(i)))
        return turns


class KeepAll(ContextPolicy):
    """Send the whole history."""

    def __repr__(self) -> str:
        return "KeepAll()"

    def select(self, turns: list[Turn], ctx: PolicyContext) -> list[Turn]:
        return list(turns)


class SlidingWindow(ContextPolicy):
    """Send the system prompt, the current round, and between `keep` and `keep + step - 1`
    earlier rounds: older rounds are dropped `step` at a time ("stepped window").

    Why stepped: DeepSeek's context cache hits only on a prompt prefix identical to an earlier
    request's (docs/deepseek-api-notes.md#context-caching). Dropping one round per turn changes
    the prompt right after the system prompt every time, so nothing after it is ever a hit.
    Dropping `step` rounds at once keeps the prefix the same for `step` turns in a row, at the
    price of sending up to `step - 1` more rounds than `keep`.

    - keep: earlier rounds always sent (>= 0; 0: only the current round).
    - step: how many rounds are dropped at a time (>= 1; default: `keep`, at least 1).
      `step=1` is a plain window of exactly `keep` earlier rounds (the prefix then changes
      every turn).
    - rounds: the former first parameter (also positional: `SlidingWindow(5)`), which counts the
      current round too: `rounds=N` is `keep=N-1` with `step=N` by default, so existing code
      sends exactly what it sent. `keep` is keyword-only, so the two never mix up.

    A round is a user message and everything after it up to the next user message (answers,
    tool calls, tool results). With `SlidingWindow(keep=2, step=3)`, the requests of a growing
    conversation carry 0, 1, 2, 3, 4, 2, 3, 4, 2, ... earlier rounds.

        conv = Conversation(client, policy=SlidingWindow(keep=5, step=5))   # 5 to 9 earlier rounds"""

    def __init__(self, rounds: int | None = None, step: int | None = None, *,
                 keep: int | None = None) -> None:
        if rounds is not None:
            if keep is not None:
                raise UsageError("SlidingWindow takes keep= (earlier rounds) or the older rounds= "
                                 "(rounds including the current one), not both")
            if type(rounds) is not int or rounds < 1:
                raise UsageError("SlidingWindow(rounds=...) must keep at least 1 round (the current one)")
            keep, default_step = rounds - 1, rounds
        else:
            keep = 5 if keep is None else keep
            if type(keep) is not int or keep < 0:
                raise UsageError(f"SlidingWindow(keep=...) must be an integer >= 0 (earlier rounds sent), "
                                 f"got {keep!r}")
            default_step = max(keep, 1)
        if step is not None and (type(step) is not int or step < 1):
            raise UsageError(f"SlidingWindow(step=...) must be an integer >= 1, got {step!r}")
        self.keep: int = keep
        self.step: int = default_step if step is None else step

    def __repr__(self) -> str:
        return f"SlidingWindow(keep={self.keep}, step={self.step})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlidingWindow) and (self.keep, self.step) == (other.keep, other.step)

    def __hash__(self) -> int:
        return hash((SlidingWindow, self.keep, self.step))

    def select(self, turns: list[Turn], ctx: PolicyContext) -> list[Turn]:
        head, rounds = split_rounds(turns)
        earlier = len(rounds) - 1  # the last round is the current one: always sent
        if earlier <= self.keep:
            return list(turns)
        # The start moves in multiples of `step` as the conversation grows: a stable prefix.
        start = ((earlier - self.keep) // self.step) * self.step
        return _flat(head, rounds[start:])


#: The name in the issue text; same class.
Window = SlidingWindow


@dataclass(repr=True)
class TokenBudget(ContextPolicy):
    """Keep the context within `max_tokens` (estimated with `_tokens`, as it will be sent): when it
    would pass the budget, drop oldest whole rounds until it fits in `drop_to * max_tokens`. Never
    drops the head (system prompt, summary) or the current round, so a single round larger than
    the budget is still sent (and the API's context limit decides)."""

    max_tokens: int
    drop_to: float = 0.75

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise UsageError("TokenBudget(max_tokens=...) must be >= 1")
        if not 0 < self.drop_to <= 1:
            raise UsageError("TokenBudget(drop_to=...) must be in (0, 1]")

    def _start(self, turns: list[Turn], ctx: PolicyContext) -> tuple[list[Turn], list[list[Turn]], int]:
        head, rounds = split_rounds(turns)
        saved = int(ctx.state.get("start_seq", -1))
        # Resume from the first round kept last time (rounds before it stay dropped).
        first = 0
        while first < len(rounds) - 1 and rounds[first][0].seq < saved:
            first += 1
        sizes = [sum(ctx.count(t) for t in r) for r in rounds]
        fixed = PROMPT_OVERHEAD + sum(ctx.count(t) for t in head)
        total = fixed + sum(sizes[first:])
        if total > self.max_tokens:
            target = self.max_tokens * self.drop_to
            while first < len(rounds) - 1 and total > target:
                total -= sizes[first]
                first += 1
        return head, rounds, first

    async def prepare(self, turns: list[Turn], ctx: PolicyContext) -> None:
        _, rounds, first = self._start(turns, ctx)
        if rounds and rounds[first][0].seq >= 0:
            ctx.state["start_seq"] = rounds[first][0].seq

    def select(self, turns: list[Turn], ctx: PolicyContext) -> list[Turn]:
        head, rounds, first = self._start(turns, ctx)
        return _flat(head, rounds[first:])


@dataclass(repr=True)
class Summarize(ContextPolicy):
    """When the unsummarized turns pass `threshold_chars` characters (the seed: 2,000), replace all
    but the last `keep_rounds` rounds by a summary - folded together with the previous summary -
    sent as one system message right after the system prompt. `summarizer` defaults to the
    conversation's model (`ModelSummarizer`); `ExtractiveSummarizer()` works offline."""

    threshold_chars: int = 2000
    keep_rounds: int = 2
    summarizer: Summarizer | None = None

    def __post_init__(self) -> None:
        if self.keep_rounds < 1:
            raise UsageError("Summarize(keep_rounds=...) must keep at least the current round (>= 1)")
        if self.threshold_chars < 0:
            raise UsageError("Summarize(threshold_chars=...) must be >= 0")

    @staticmethod
    def _chars(t: Turn) -> int:
        m = t.message
        content = m.get("content")
        n = len(content) if isinstance(content, str) else 0
        if isinstance(content, list):
            n = sum(len(str(p.get("text", ""))) for p in content if isinstance(p, Mapping))
        for call in m.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping):
                n += len(str(fn.get("arguments", ""))) + len(str(fn.get("name", "")))
        return n

    def select(self, turns: list[Turn], ctx: PolicyContext) -> list[Turn]:
        summary = ctx.state.get("summary")
        if summary is None:
            return list(turns)
        upto = int(ctx.state.get("upto_seq", 0))
        head, rounds = split_rounds(turns)
        kept = [t for r in rounds for t in r if t.seq < 0 or t.seq >= upto]
        if summary:
            head.append(Turn(-1, {"role": "system", "content": SUMMARY_PREFIX + summary}))
        return [*head, *kept]

    async def prepare(self, turns: list[Turn], ctx: PolicyContext) -> None:
        _, rounds = split_rounds(self.select(turns, ctx))
        if len(rounds) <= self.keep_rounds:
            return
        if sum(self._chars(t) for r in rounds for t in r) <= self.threshold_chars:
            return
        old = [t.message for r in rounds[: -self.keep_rounds] for t in r]
        summarizer = self.summarizer or ctx.summarizer
        if summarizer is None:
            raise UsageError("Summarize has no summarizer: pass summarizer=ExtractiveSummarizer() "
                             "or use it inside a Conversation (which summarizes with its model)")
        try:
            if getattr(summarizer, "blocking", False):
                text: Any = await asyncio.to_thread(summarizer.summarize, old, ctx.state.get("summary"))
            else:
                text = summarizer.summarize(old, ctx.state.get("summary"))
            if inspect.isawaitable(text):
                text = await text
        except DeepSeekError as exc:
            # A summary only saves tokens: when the summarizer's own request fails, this turn goes
            # out unsummarized (nothing is lost) and the next turn tries again.
            log.warning("summarizing older turns failed, sending them as they are: %s", redact(str(exc)))
            ctx.state["last_error"] = redact(str(exc))
            return
        if not isinstance(text, str):
            raise UsageError(f"{summarizer!r}.summarize() must return a str, not {type(text).__name__}")
        ctx.state.pop("last_error", None)
        ctx.state["summary"] = text.strip()
        ctx.state["upto_seq"] = rounds[-self.keep_rounds][0].seq
        ctx.state["summaries"] = int(ctx.state.get("summaries", 0)) + 1
