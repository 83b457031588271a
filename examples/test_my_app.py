"""Testing your own app against DeepSeek's failure modes with the `deepseek_kit.testing` plugin.

Run it with the plugin enabled (docs/testing.md):

    pytest -p deepseek_kit.testing examples/test_my_app.py

or put `pytest_plugins = ["deepseek_kit.testing"]` in your conftest.py.
"""

from __future__ import annotations

import pytest

from deepseek_kit import AsyncClient, ServiceUnavailableError
from deepseek_kit.testing import EmulatorHandle


# -- the app under test: one function that asks DeepSeek a question -----------------------------------

async def summarize(client: AsyncClient, text: str) -> str:
    completion = await client.chat.completions.create(
        model="deepseek-flash",
        messages=[{"role": "system", "content": "Summarize in one sentence."},
                  {"role": "user", "content": text}],
        thinking=False,
    )
    return completion.choices[0].message.content or ""


# -- its tests -----------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_summarize_sends_the_text(deepseek_emulator: EmulatorHandle) -> None:
    async with deepseek_emulator.client() as client:
        summary = await summarize(client, "The quarterly report is late.")
    assert summary  # the emulator's answer: deterministic filler text
    request = deepseek_emulator.assert_called(times=1, path="/chat/completions")[0]
    assert request.json["messages"][1]["content"] == "The quarterly report is late."
    assert request.headers["Authorization"].startswith("Bearer ****")  # the key itself is never kept


@pytest.mark.asyncio
async def test_summarize_survives_two_503s(deepseek_emulator: EmulatorHandle) -> None:
    deepseek_emulator.fail(status=503, times=2, retry_after=0)
    async with deepseek_emulator.client() as client:
        assert await summarize(client, "Retry me.")
    deepseek_emulator.assert_called(times=3)  # two 503s, then the answer


@pytest.mark.asyncio
async def test_summarize_gives_up_when_retries_run_out(deepseek_emulator: EmulatorHandle) -> None:
    deepseek_emulator.fail(status=503, times=5, retry_after=0)
    async with deepseek_emulator.client(max_retries=1) as client:
        with pytest.raises(ServiceUnavailableError):
            await summarize(client, "Never answered.")
    deepseek_emulator.assert_called(times=2)


def test_sync_client_and_a_shared_emulator(deepseek_emulator_session: EmulatorHandle) -> None:
    # one emulator for the whole session: each test starts with no fault and no recorded request
    deepseek_emulator_session.assert_not_called()
    deepseek_emulator_session.rate_limit(retry_after=0, times=1)
    with deepseek_emulator_session.sync_client() as client:
        client.chat.completions.create(model="deepseek-flash", messages=[{"role": "user", "content": "Hi"}])
    assert [r.path for r in deepseek_emulator_session.requests] == ["/chat/completions"] * 2
