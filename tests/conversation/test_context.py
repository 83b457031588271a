"""Context policies as pure logic: sliding window, token budget (property test over random histories
with tool calls), summarization with a summarizer plugin, composition, and prefix stability."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit import UsageError
from deepseek_kit._conversation.context import (
    SUMMARY_PREFIX,
    Chain,
    KeepAll,
    PolicyContext,
    SlidingWindow,
    Summarize,
    TokenBudget,
    Turn,
    Window,
    as_policy,
    split_rounds,
)
from deepseek_kit._conversation.summarize import ExtractiveSummarizer
from deepseek_kit._wire.tokens import MESSAGE_OVERHEAD, PROMPT_OVERHEAD, count_tokens, message_text

SYSTEM = Turn(-1, {"role": "system", "content": "You are a careful assistant."})


def count(t: Turn) -> int:
    return MESSAGE_OVERHEAD + count_tokens(message_text(t.message))


def ctx() -> PolicyContext:
    return PolicyContext({}, count, None)


def chat(n_rounds: int, words: int = 5) -> list[Turn]:
    """System prompt + n plain rounds (user, assistant)."""
    msgs = []
    for i in range(n_rounds):
        msgs.append({"role": "user", "content": f"question {i} " + "word " * words})
        msgs.append({"role": "assistant", "content": f"answer {i} " + "text " * words})
    return [SYSTEM, *(Turn(i, m) for i, m in enumerate(msgs))]


def rounds_of(turns: list[Turn]) -> list[int]:
    """The round numbers (from 'question N') of the user turns kept."""
    return [int(t.message["content"].split()[1]) for t in turns if t.role == "user"]


def total(turns: list[Turn]) -> int:
    return PROMPT_OVERHEAD + sum(count(t) for t in turns)


# -- rounds ------------------------------------------------------------------------------------------


def test_split_rounds_keeps_tool_results_with_their_round():
    msgs = [
        {"role": "assistant", "content": "Hi! How can I help?"},  # before any user turn: its own round
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "a", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "thanks"},
    ]
    head, rounds = split_rounds([SYSTEM, *(Turn(i, m) for i, m in enumerate(msgs))])
    assert head == [SYSTEM]
    assert [[t.seq for t in r] for r in rounds] == [[0], [1, 2, 3, 4], [5]]


# -- sliding window ----------------------------------------------------------------------------------


def test_window_step_one_is_the_seeds_system_plus_last_five_rounds():
    out = SlidingWindow(rounds=5, step=1).select(chat(12), ctx())
    assert out[0] == SYSTEM
    assert rounds_of(out) == [7, 8, 9, 10, 11]
    assert SlidingWindow(rounds=5, step=1).select(chat(3), ctx()) == chat(3)


def test_window_default_drops_in_coarse_steps_and_keeps_at_least_five_rounds():
    w = SlidingWindow(rounds=5)  # step defaults to 5
    starts = []
    for n in range(1, 31):
        kept = rounds_of(w.select(chat(n), ctx()))
        assert kept == list(range(kept[0], n))  # a contiguous run ending with the current round
        assert 5 <= len(kept) <= 9 or n < 5
        starts.append(kept[0])
    # The first kept round only moves every 5 turns: the prompt prefix is stable in between.
    assert sorted(set(starts)) == [0, 5, 10, 15, 20, 25]
    assert sum(1 for a, b in itertools.pairwise(starts) if a != b) == 5
    seed = [rounds_of(SlidingWindow(rounds=5, step=1).select(chat(n), ctx()))[0] for n in range(1, 31)]
    assert sum(1 for a, b in itertools.pairwise(seed) if a != b) == 25  # the seed's window moves every turn


@pytest.mark.parametrize(("keep", "step"), [(5, 5), (2, 3), (0, 1), (3, 1), (4, 2)])
def test_stepped_window_sends_between_keep_and_keep_plus_step_minus_one_earlier_rounds(keep, step):
    """The exact counts: the current round plus `keep` to `keep + step - 1` earlier rounds once the
    conversation is long enough, and the first kept round moves only every `step` turns."""
    w = SlidingWindow(keep=keep, step=step)
    earlier, starts = [], []
    for n in range(1, 41):
        kept = rounds_of(w.select(chat(n), ctx()))
        assert kept[-1] == n - 1 and kept == list(range(kept[0], n))
        earlier.append(len(kept) - 1)
        starts.append(kept[0])
    assert earlier[:keep + 1] == list(range(keep + 1))  # everything while there is little
    assert set(earlier[keep:]) == set(range(keep, keep + step))
    assert sum(1 for a, b in itertools.pairwise(starts) if a != b) == (40 - 1 - keep) // step


def test_stepped_window_example_from_the_docstring_and_defaults():
    w = SlidingWindow(keep=2, step=3)
    assert [len(rounds_of(w.select(chat(n), ctx()))) - 1 for n in range(1, 10)] == [0, 1, 2, 3, 4, 2, 3, 4, 2]
    assert SlidingWindow() == SlidingWindow(keep=5, step=5)
    assert SlidingWindow(5) == SlidingWindow(rounds=5) == SlidingWindow(keep=4, step=5)  # positional: rounds
    assert SlidingWindow(5, 1) == SlidingWindow(keep=4, step=1)
    assert repr(SlidingWindow(rounds=5)) == "SlidingWindow(keep=4, step=5)"
    assert SlidingWindow(keep=0).step == 1
    # rounds= (the current round included) sends exactly what it always did
    for n in range(1, 30):
        stepped = SlidingWindow(keep=4, step=5).select(chat(n), ctx())
        assert SlidingWindow(rounds=5).select(chat(n), ctx()) == stepped
    with pytest.raises(UsageError, match="not both"):
        SlidingWindow(keep=3, rounds=4)
    with pytest.raises(UsageError, match="keep"):
        SlidingWindow(keep=-1)


def test_window_validates_and_is_also_called_window():
    assert Window is SlidingWindow
    with pytest.raises(UsageError):
        SlidingWindow(rounds=0)
    with pytest.raises(UsageError):
        SlidingWindow(rounds=3, step=0)


# -- token budget: property test over random histories with tool calls -------------------------------


@st.composite
def histories(draw):
    """Well-formed histories: rounds of a user message, then zero or more tool cycles (an assistant
    turn with 1-3 parallel calls followed by their results), then usually a text answer."""
    msgs = []
    n_rounds = draw(st.integers(1, 8))
    call_no = 0
    for r in range(n_rounds):
        msgs.append({"role": "user", "content": f"u{r} " + "x" * draw(st.integers(0, 400))})
        for _ in range(draw(st.integers(0, 2))):
            ids = [f"call_{call_no + k}" for k in range(draw(st.integers(1, 3)))]
            call_no += len(ids)
            msgs.append(
                {
                    "role": "assistant",
                    "content": "",
                    "reasoning_content": "r" * draw(st.integers(0, 200)),
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        for i in ids
                    ],
                }
            )
            for i in ids:
                msgs.append({"role": "tool", "tool_call_id": i, "content": "y" * draw(st.integers(0, 300))})
        if draw(st.booleans()) or r < n_rounds - 1:
            msgs.append({"role": "assistant", "content": "a" * draw(st.integers(0, 300))})
    return [SYSTEM, *(Turn(i, m) for i, m in enumerate(msgs))]


def check_integrity(turns: list[Turn], out: list[Turn]) -> None:
    assert out[0] == SYSTEM  # the system prompt is never dropped
    body = out[1:]
    # A suffix of the history made of whole rounds, oldest dropped first: it starts at a user message
    # and is exactly the tail of the original.
    assert body == turns[len(turns) - len(body):]
    assert body and (body[0].role == "user" or body[0].seq == 0)
    called = {c["id"] for t in body for c in t.message.get("tool_calls") or ()}
    answered = {t.message["tool_call_id"] for t in body if t.role == "tool"}
    assert called == answered  # no tool call without its results, no result without its call


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(1, 2500), st.sampled_from([0.5, 0.75, 1.0]))
def test_token_budget_never_drops_system_or_splits_tool_calls(turns, budget, drop_to):
    policy = TokenBudget(budget, drop_to=drop_to)
    out = policy.select(turns, ctx())
    check_integrity(turns, out)
    _, rounds = split_rounds(turns)
    _, kept = split_rounds(out)
    assert kept[-1] == rounds[-1]  # the current round is always sent
    # Within the budget, unless only the current round is left (it is sent whatever its size).
    assert total(out) <= budget or len(kept) == 1
    if total(turns) <= budget:
        assert out == turns  # nothing dropped when it fits


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(1, 2500), st.data())
def test_token_budget_with_saved_state_keeps_the_same_guarantees(turns, budget, data):
    """The budget remembers its first kept round between requests (prefix stability); whatever an
    earlier request of the same conversation saved, the guarantees hold."""
    import asyncio

    policy, c = TokenBudget(budget), ctx()
    cut = data.draw(st.integers(2, len(turns)))  # an earlier moment of the conversation
    asyncio.run(policy.prepare(turns[:cut], c))
    out = policy.select(turns, c)
    check_integrity(turns, out)
    _, rounds = split_rounds(turns)
    _, kept = split_rounds(out)
    assert kept[-1] == rounds[-1]
    assert total(out) <= budget or len(kept) == 1
    assert out[1].seq >= c.state.get("start_seq", 0) or len(kept) == 1  # dropped rounds stay dropped


def test_token_budget_drops_to_the_low_mark_and_then_holds_the_prefix():
    policy = TokenBudget(600, drop_to=0.5)
    state = ctx()
    history: list[Turn] = [SYSTEM]
    firsts, sent = [], []
    import asyncio

    async def turn(i: int) -> list[Turn]:
        history.append(Turn(len(history) - 1, {"role": "user", "content": f"question {i} " + "word " * 20}))
        await policy.prepare(history, state)
        out = policy.select(history, state)
        history.append(
            Turn(len(history) - 1, {"role": "assistant", "content": f"answer {i} " + "text " * 20})
        )
        return out

    for i in range(30):
        out = asyncio.run(turn(i))
        firsts.append(rounds_of(out)[0])
        sent.append(out)
        assert total(out) <= 600
    breaks = sum(1 for a, b in itertools.pairwise(firsts) if a != b)
    # Each drop goes down to ~300 tokens, so the budget holds several turns before the next drop.
    assert 0 < breaks <= 30 // 4
    for (a, b), (fa, fb) in zip(itertools.pairwise(sent), itertools.pairwise(firsts), strict=True):
        if fa == fb:
            assert b[: len(a)] == a  # between drops each request extends the previous one
    # drop_to=1.0 (fit exactly) moves the prefix on nearly every turn once full.
    exact = TokenBudget(600, drop_to=1.0)
    firsts_exact = [rounds_of(exact.select(chat(n, words=20), ctx()))[0] for n in range(1, 31)]
    assert sum(1 for a, b in itertools.pairwise(firsts_exact) if a != b) > breaks


# -- summarization -----------------------------------------------------------------------------------


class Recorder:
    """A summarizer plugin that records what it was asked (a user-supplied summarizer)."""

    def __init__(self):
        self.calls = []

    async def summarize(self, messages, previous=None):
        self.calls.append((list(messages), previous))
        return f"summary#{len(self.calls)}"


async def test_summarize_keeps_system_and_recent_rounds_and_summarizes_the_rest():
    rec = Recorder()
    policy = Summarize(threshold_chars=2000, keep_rounds=2, summarizer=rec)
    c = ctx()
    small = chat(3, words=5)  # well under 2,000 characters
    await policy.prepare(small, c)
    assert policy.select(small, c) == small and not rec.calls

    turns = chat(12, words=30)  # over 2,000 characters
    await policy.prepare(turns, c)
    out = policy.select(turns, c)
    assert out[0] == SYSTEM
    assert out[1].message == {"role": "system", "content": SUMMARY_PREFIX + "summary#1"}
    assert rounds_of(out) == [10, 11]  # the last two rounds verbatim
    assert out[2:] == turns[-4:]
    summarized, previous = rec.calls[0]
    assert previous is None and len(summarized) == 20  # rounds 0-9, user and assistant each
    assert summarized[0]["content"].startswith("question 0")

    # Growing again: no new summary until the unsummarized turns pass the threshold again.
    more = chat(14, words=30)
    await policy.prepare(more, c)
    assert len(rec.calls) == 1
    assert rounds_of(policy.select(more, c)) == [10, 11, 12, 13]
    much = chat(30, words=30)
    await policy.prepare(much, c)
    assert len(rec.calls) == 2
    summarized, previous = rec.calls[1]
    assert previous == "summary#1"  # the old summary is folded into the new one
    assert summarized[0]["content"].startswith("question 10")
    out = policy.select(much, c)
    assert out[1].message["content"] == SUMMARY_PREFIX + "summary#2"
    assert rounds_of(out) == [28, 29]
    assert c.state["summaries"] == 2


async def test_summarize_with_the_offline_extractive_summarizer():
    turns = [SYSTEM] + [
        Turn(i, m)
        for i, m in enumerate(
            [
                {
                    "role": "user",
                    "content": "Our database is PostgreSQL 15 on a single server. The server has 64 GB.",
                },
                {
                    "role": "assistant",
                    "content": "PostgreSQL 15 handles that well. Tune shared_buffers for the server.",
                },
                {
                    "role": "user",
                    "content": "The PostgreSQL server is slow on reports. Reports scan the orders table.",
                },
                {
                    "role": "assistant",
                    "content": "Add an index on orders for the report filters. Check the PostgreSQL plan.",
                },
                {"role": "user", "content": "What about the weather?"},
                {"role": "assistant", "content": "I cannot see the weather."},
            ]
        )
    ]
    policy = Summarize(threshold_chars=100, keep_rounds=1, summarizer=ExtractiveSummarizer(max_chars=200))
    c = ctx()
    await policy.prepare(turns, c)
    out = policy.select(turns, c)
    assert out[0] == SYSTEM and out[-2:] == turns[-2:]
    summary = out[1].message["content"]
    assert summary.startswith(SUMMARY_PREFIX) and "PostgreSQL" in summary
    assert len(summary) <= len(SUMMARY_PREFIX) + 200


def test_summarize_needs_a_summarizer_outside_a_conversation():
    import asyncio

    with pytest.raises(UsageError, match="no summarizer"):
        asyncio.run(Summarize(threshold_chars=10).prepare(chat(5), ctx()))
    with pytest.raises(UsageError):
        Summarize(keep_rounds=0)


# -- composition -------------------------------------------------------------------------------------


async def test_policies_compose_with_or_and_lists():
    a, b = SlidingWindow(rounds=4, step=1), TokenBudget(100)
    chained = a | b
    assert isinstance(chained, Chain) and chained.policies == [a, b]
    assert isinstance(as_policy([a, b]), Chain)
    assert as_policy(None).select(chat(9), ctx()) == chat(9)
    assert isinstance(as_policy(None), KeepAll)
    turns = chat(10, words=10)
    c1, c2 = ctx(), ctx()
    out = chained.select(turns, c1)
    assert out == as_policy([a, b]).select(turns, c2)
    assert out == b.select(a.select(turns, ctx()), ctx())
    assert len(rounds_of(out)) < 4 and total(out) <= 100
    # State is kept per position in the chain.
    rec = Recorder()
    chain = [SlidingWindow(rounds=8, step=1), Summarize(threshold_chars=300, keep_rounds=2, summarizer=rec)]
    policy = as_policy(chain)
    c = ctx()
    await policy.prepare(turns, c)
    assert c.state["1"]["summary"] == "summary#1"
    out = policy.select(turns, c)
    assert out[0] == SYSTEM and out[1].message["content"].endswith("summary#1")
    assert rounds_of(out) == [8, 9]
    assert len(rec.calls[0][0]) == 12  # rounds 2-7: the window had already dropped 0 and 1
    with pytest.raises(UsageError, match="not a context policy"):
        as_policy([a, "window"])
