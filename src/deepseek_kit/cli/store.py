"""Where `dsk ask` and `dsk chat` keep their conversations, what "last" means, and how a turn cut
short by Ctrl-C is kept.

Both commands store each conversation in the logs database (`$DSK_HOME/logs.sqlite3`, the
`conversations` table, through the public `save_conversation` / `load_conversation` /
`list_conversations`), from the first answer on and after every later one, unless logging is off
(`--no-log`, `DSK_NO_LOGS=1`, `logs = false` in the config file). "last" is the conversation
updated most recently, by either command: `dsk -c "..."` and `dsk ask -c` continue it, `dsk chat
--resume last` resumes it. `--cid ID` (a unique id prefix will do) picks another.

A saved conversation's `meta` carries `dsk_chat` (the `Conversation.to_dict()` settings, policy
state and tallies), `source` ("ask" or "chat") and `interrupted`: one record per answer that Ctrl-C
cut short, `{"message": i, "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost",
"currency", "estimated": true}` where `i` indexes the saved `messages`. The partial answer itself
is an ordinary assistant message holding exactly the text that was shown, so a later request sends
it back as history (the model sees where it stopped); a key like "interrupted" inside the message
would be sent to the API too, so the mark lives in `meta`. The stream of a cut answer never got its
usage (it rides on the final chunk, docs/deepseek-api-notes.md#usage-fields), so its tokens are
estimated (`count_messages` for the prompt, all of it counted as cache misses; `count_tokens` for
what arrived) and priced as DeepSeek would at that moment: an upper bound rather than nothing,
since DeepSeek bills the tokens it generated before the connection closed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import common

if TYPE_CHECKING:
    from deepseek_kit import Conversation

__all__ = [
    "LAST", "Interruption", "Stored", "apply_command_line", "enabled", "keep_partial", "last_id", "load",
    "save", "save_or_warn",
]

LAST = "last"


def enabled(b: common.Backend, args: argparse.Namespace) -> bool:
    """Whether this run stores its conversation: the same switch as the request log."""
    return common.log_step(b, args) is not False


def last_id() -> str | None:
    """The id of the conversation updated most recently (by `dsk ask` or `dsk chat`), or None."""
    from deepseek_kit import list_conversations

    newest = list_conversations(1)
    return newest[0].id if newest else None


@dataclass
class Interruption:
    """An answer cut short by Ctrl-C: where it is in the history and its estimated usage and cost."""

    history_index: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost: Decimal
    currency: str

    def to_meta(self, offset: int) -> dict[str, Any]:
        return {"message": self.history_index + offset, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "reasoning_tokens": self.reasoning_tokens,
                "cost": str(self.cost), "currency": self.currency, "estimated": True}

    @classmethod
    def from_meta(cls, data: Any, offset: int) -> Interruption | None:
        try:
            return cls(int(data["message"]) - offset, int(data["prompt_tokens"]),
                       int(data["completion_tokens"]), int(data.get("reasoning_tokens", 0)),
                       Decimal(str(data["cost"])), str(data.get("currency", "CNY")))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return None  # a record written by hand or by a later version: not ours to fail on


@dataclass
class Stored:
    """A conversation as `dsk` stores it: the `Conversation`, its id once saved, its title, where
    it was started (ask or chat) and the answers Ctrl-C cut short."""

    conv: Conversation
    id: str | None = None
    title: str | None = None
    source: str = "chat"
    interrupted: list[Interruption] = field(default_factory=list)


def save(st: Stored, title: str | None = None) -> str:
    """Save (or update) `st`; returns (and sets) its id."""
    from deepseek_kit import save_conversation

    conv = st.conv
    data = conv.to_dict()
    data.pop("history")
    offset = 1 if conv.system else 0
    messages = ([{"role": "system", "content": conv.system}] if conv.system else []) + conv.history
    if title:
        st.title = title
    meta: dict[str, Any] = {"model": conv.model, "dsk_chat": data, "source": st.source}
    if st.interrupted:
        meta["interrupted"] = [i.to_meta(offset) for i in st.interrupted]
    if st.title:
        meta["title"] = st.title
    st.id = save_conversation(st.id, messages, meta)
    return st.id


def save_or_warn(st: Stored) -> str | None:
    """`save`, after an answer that has already been printed: a store that cannot be written (a
    read-only or full disk, a locked database) is a warning on stderr, not a failed command."""
    import sys

    from deepseek_kit import UsageError

    try:
        return save(st)
    except UsageError as exc:
        print(f"dsk: warning: the conversation was not stored: {common.terminal_safe(str(exc))}",
              file=sys.stderr, flush=True)
        return None


def load(ref: str, like: Conversation, *, none_yet: str) -> Stored:
    """The saved conversation `ref` (an id, a unique id prefix, or "last"), rebuilt on `like`'s
    client, context policy and summarizer. `none_yet`: the error when "last" finds nothing."""
    from deepseek_kit import Conversation, UsageError, load_conversation

    if ref == LAST:
        newest = last_id()
        if newest is None:
            raise common.CLIError(none_yet)
        ref = newest
    try:
        messages, meta = load_conversation(ref)
    except UsageError as exc:
        raise common.CLIError(str(exc)) from None
    data: dict[str, Any] = dict(meta.get("dsk_chat") or {})
    system = None
    history = list(messages)
    offset = 0
    while history and history[0].get("role") == "system" and system is None:
        system = str(history.pop(0).get("content") or "") or None
        offset += 1
    data.update(version=data.get("version", 1), history=history, system=system,
                model=meta.get("model") or data.get("model") or like.model)
    try:
        conv = Conversation.from_dict(data, like.client, policy=like.policy, summarizer=like.summarizer)
    except UsageError as exc:
        raise common.CLIError(f"cannot load conversation {meta['id']}: {exc}") from None
    cut = [Interruption.from_meta(r, offset) for r in meta.get("interrupted") or []]
    return Stored(conv, str(meta["id"]), meta.get("title"), str(meta.get("source") or "chat"),
                  [i for i in cut if i is not None])


def apply_command_line(conv: Conversation, args: argparse.Namespace, model: str) -> None:
    """Options given on the command line win over the settings a stored conversation came back
    with (`dsk -c --model ...`, `dsk chat --resume ID --system ...`); `model` is the resolved one."""
    if args.model:
        conv.model = model
    if args.system:
        conv.system = args.system
    if args.preset:
        conv.preset = args.preset
    if args.think is not None:
        conv.thinking = args.think


def keep_partial(st: Stored, user: str, content: str, reasoning: str) -> Interruption:
    """Add the question and the partial answer (`content`, exactly as shown; `reasoning` as
    received) to the history, and its estimated usage to the tallies (see the module docstring).
    Call it right after the cut: the history is still the one the request was built from (a turn
    is committed only when its answer completes), so the prompt is counted after the fact rather
    than before every request."""
    import msgspec

    from deepseek_kit import Usage, count_tokens

    conv = st.conv
    prompt_tokens = conv.count_tokens(user)
    conv.append({"role": "user", "content": user})
    answer: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        answer["reasoning_content"] = reasoning
    conv.append(answer)
    out = count_tokens(content) + count_tokens(reasoning) if (content or reasoning) else 0
    thought = count_tokens(reasoning) if reasoning else 0
    usage = msgspec.convert({
        "prompt_tokens": prompt_tokens, "completion_tokens": out, "total_tokens": prompt_tokens + out,
        "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": prompt_tokens,
        "completion_tokens_details": {"reasoning_tokens": thought},
    }, Usage)
    before = conv.usage.cost
    conv.usage.add(conv.model, usage)
    cut = Interruption(len(conv.history) - 1, prompt_tokens, out, thought, conv.usage.cost - before,
                       conv.usage.currency)
    st.interrupted.append(cut)
    return cut
