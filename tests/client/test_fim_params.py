"""FIM `beta.completions.create` takes its options from one TypedDict (`FimParams`), like chat:
a misspelt keyword is a TypeError naming its close match before any request; `stream` picks the
return type."""

from __future__ import annotations

import pytest

from deepseek_kit import AsyncClient, AsyncCompletionStream, Client, Completion, CompletionStream


async def test_fim_create_typed_options_and_typos(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(TypeError, match=r"'sufix' \(did you mean 'suffix'\?\)"):
            await c.beta.completions.create(model="deepseek-flash", prompt="def f(", sufix=")")  # type: ignore[call-overload]
        assert emulator.state.total_requests == 0
        done = await c.beta.completions.create(
            model="deepseek-flash", prompt="def f(", suffix=")", max_tokens=8, cache=False
        )
        assert isinstance(done, Completion) and done.choices
        s = await c.beta.completions.create(model="deepseek-flash", prompt="def f(", stream=True)
        assert isinstance(s, AsyncCompletionStream)
        async for _ in s:
            pass
        assert s.text()


def test_sync_fim_create(emulator):
    with Client(api_key="sk-test", base_url=emulator.base_url) as c:
        assert isinstance(
            c.beta.completions.create(model="deepseek-flash", prompt="x", max_tokens=4), Completion
        )
        with c.beta.completions.create(model="deepseek-flash", prompt="x", stream=True) as s:
            assert isinstance(s, CompletionStream)
            for _ in s:
                pass
        assert c.models.list().data and c.user.balance().is_available is not None
