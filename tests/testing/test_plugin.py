"""`deepseek_kit.testing`: the example test file passes under the plugin in a separate pytest run,
and each handle method reaches the emulator's fault machinery."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepseek_kit import RateLimitError, StreamError
from deepseek_kit.server import EmulatorConfig, EmulatorThread
from deepseek_kit.testing import EmulatorHandle

ROOT = Path(__file__).resolve().parents[2]
MSGS = [{"role": "user", "content": "Hi"}]


def test_the_example_passes_with_the_plugin_enabled(tmp_path: Path) -> None:
    """What a user runs: `pytest -p deepseek_kit.testing test_my_app.py`, outside our conftest."""
    shutil.copy(ROOT / "examples" / "test_my_app.py", tmp_path)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "deepseek_kit.testing", "-p", "no:cacheprovider",
         "test_my_app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


@pytest.fixture
def handle() -> Iterator[EmulatorHandle]:
    with EmulatorThread(EmulatorConfig()) as emu:
        yield EmulatorHandle(emu)


async def test_fail_then_recover_and_requests_are_recorded(handle: EmulatorHandle) -> None:
    handle.fail(status=429, times=1, retry_after=0)
    async with handle.client(max_retries=0) as c:
        with pytest.raises(RateLimitError):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
    first, second = handle.assert_called(times=2, path="/chat/completions")
    assert first.json == second.json and first.json["messages"] == MSGS
    assert "sk-test" not in str(first.headers) and first.headers["Authorization"] == "Bearer ****-kit"
    assert handle.last_request == second


async def test_reset_mid_stream_and_insufficient_resources(handle: EmulatorHandle) -> None:
    handle.reset(after_chunks=2, times=1)
    async with handle.client(max_retries=0) as c:
        with pytest.raises(StreamError, match="lost mid-stream"):
            stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                                     thinking=False, resume=False)
            async with stream:
                async for _ in stream:
                    pass
        handle.insufficient_resources(after_chunks=1)
        done = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
        assert done.choices[0].finish_reason == "insufficient_system_resource"
        handle.clear_faults()
        done = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
        assert done.choices[0].finish_reason == "stop"


async def test_stall_holds_the_first_token(handle: EmulatorHandle) -> None:
    handle.stall(seconds=0.3, times=1)
    assert handle.config.faults.startswith("stall_first_token=0.3;times=1;key=")
    async with handle.client() as c:
        done = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
    assert done.choices[0].message.content


def test_a_bad_directive_fails_at_once_and_forget_resets(handle: EmulatorHandle) -> None:
    with pytest.raises(ValueError, match="unknown directive 'explode'"):
        handle.inject("explode")
    handle.fail(503, times=3)
    with handle.sync_client(max_retries=0) as c, pytest.raises(Exception):  # noqa: B017
        c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
    handle.forget()
    assert handle.requests == [] and handle.config.faults == ""
    handle.assert_not_called()
    with pytest.raises(AssertionError, match="expected 1 request, the DeepSeek emulator received 0"):
        handle.assert_called(times=1)
