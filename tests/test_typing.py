"""The public API's types catch mistakes: `mypy --strict` (the project's settings) passes on correct
code and reports typos and wrong types at the exact line, for `create()` (chat and FIM, async and
sync, `stream` literal or a bool variable, every per-call option), `Conversation`, `parse`, the tool
loop, `cost` and the sync `Client`'s constructor.

One mypy run over all the snippets, in process (`mypy.api.run`), with the repository's mypy cache:
`scripts/test` runs `mypy -p deepseek_kit` first, so the library is read from the cache and only
the snippets are checked.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import mypy.api as mypy_api
import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD_ASYNC = '''
from decimal import Decimal

import msgspec

from deepseek_kit import (AsyncClient, AsyncCompletionStream, AsyncStream, ChatCompletion, Completion,
                          Conversation, Parsed, ToolRun, cost, parse, run_tool_loop, run_tools, tool)


class City(msgspec.Struct):
    name: str


@tool
def get_weather(city: str) -> str:
    """Weather."""
    return "sunny"


async def main(flag: bool) -> Decimal:
    msgs = [{"role": "user", "content": "hi"}]
    async with AsyncClient() as client:
        c: ChatCompletion = await client.chat.completions.create(
            model="deepseek-flash", messages=msgs, cache="refresh", resume=True, timeout=30, max_retries=2,
            thinking=False, user_id="u1", extra_headers={"X-A": "b"}, endpoints={"deepseek"})
        s: AsyncStream = await client.chat.completions.create(
            model="deepseek-flash", messages=msgs, stream=True)
        either: ChatCompletion | AsyncStream = await client.chat.completions.create(
            model="deepseek-flash", messages=msgs, stream=flag)
        f: Completion = await client.beta.completions.create(
            model="deepseek-flash", prompt="def f(", suffix=")")
        fs: AsyncCompletionStream = await client.beta.completions.create(
            model="deepseek-flash", prompt="x", stream=True, cache=True)
        conv = Conversation(client, system="Be brief.", temperature=0.2, max_history=50)
        r: ChatCompletion = await conv.send("hi", max_tokens=10, model="deepseek-v4-pro")
        run: ToolRun = await conv.run_tools("Weather in Paris?", [get_weather], max_tokens=200)
        city: City = await parse(client, "json please", City, model="deepseek-flash", temperature=0.1)
        full: Parsed[City] = await parse(client, "json please", City, model="deepseek-flash", full=True)
        name: str = full.value.name
        loop: ToolRun = await run_tool_loop(
            client, msgs, [get_weather], model="deepseek-flash", max_tokens=100)
        async for event in run_tools(client, msgs, [get_weather], model="deepseek-flash", temperature=0.0):
            pass
        return cost(c.usage, "deepseek-flash") + full.cost + loop.cost + run.cost
'''

GOOD_SYNC = """
import msgspec

from deepseek_kit import (ChatCompletion, Client, Completion, CompletionStream, Parsed, Stream,
                          SyncConversation, parse_sync, run_tool_loop_sync)


class City(msgspec.Struct):
    name: str


def main(flag: bool) -> None:
    with Client(max_retries=2, timeout=30) as client:
        s: Stream = client.chat.completions.create(model="deepseek-flash", messages=[], stream=True)
        either: ChatCompletion | Stream = client.chat.completions.create(model="m", messages=[], stream=flag)
        f: Completion = client.beta.completions.create(model="deepseek-flash", prompt="x", max_tokens=5)
        fs: CompletionStream = client.beta.completions.create(model="deepseek-flash", prompt="x", stream=True)
        conv = SyncConversation(client, max_tokens=10)
        answer: ChatCompletion = conv.send("hi", temperature=0.5)
        p: Parsed[City] = parse_sync(client, "json", City, model="deepseek-flash", full=True)
        run_tool_loop_sync(client, [], [len], model="deepseek-flash", max_retries=1)
"""

BAD = '''
import msgspec

from deepseek_kit import AsyncClient, Client, Conversation, SyncConversation, cost, parse, run_tool_loop


class City(msgspec.Struct):
    name: str


async def main() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    async with AsyncClient() as client:
        await client.chat.completions.create(model="deepseek-flash", messages=msgs, temprature=0.2)
        await client.chat.completions.create(model="deepseek-flash", messages=msgs, cache="sometimes")
        conv = Conversation(client, temprature=0.2)
        await conv.send("hi", max_token=10)
        await parse(client, "json", City, model="deepseek-flash", max_reasks="3")
        await run_tool_loop(client, msgs, [], model="deepseek-flash", max_token=5)
        cost(None, 42)


def sync() -> None:
    with Client() as client:
        SyncConversation(client, temprature=1.0)
    Client(max_retrys=3)
'''

# file, line, error: what mypy --strict must say (and nothing else).
EXPECTED = {
    ("bad.py", 13, 'Unexpected keyword argument "temprature" for overloaded function "create" of '
                   '"ChatCompletions"; did you mean "temperature"?  [call-overload]'),
    ("bad.py", 13, 'No overload variant of "create" of "ChatCompletions" matches argument types "str", '
                   '"list[dict[str, str]]", "float"  [call-overload]'),
    ("bad.py", 14, 'No overload variant of "create" of "ChatCompletions" matches argument types "str", '
                   '"list[dict[str, str]]", "str"  [call-overload]'),
    ("bad.py", 15, 'Unexpected keyword argument "temprature" for "Conversation"; did you mean '
                   '"temperature"?  [call-arg]'),
    ("bad.py", 16, 'Unexpected keyword argument "max_token" for "send" of "Conversation"; did you mean '
                   '"max_tokens"?  [call-arg]'),
    ("bad.py", 17, 'No overload variant of "parse" matches argument types "AsyncClient", "str", '
                   '"type[City]", "str", "str"  [call-overload]'),
    ("bad.py", 18, 'Unexpected keyword argument "max_token" for "run_tool_loop"; did you mean "max_tokens"?  '
                   '[call-arg]'),
    ("bad.py", 19, 'Argument 2 to "cost" has incompatible type "int"; expected "str"  [arg-type]'),
    ("bad.py", 24, 'Unexpected keyword argument "temprature" for "SyncConversation"; did you mean '
                   '"temperature"?  [call-arg]'),
    ("bad.py", 25, 'Unexpected keyword argument "max_retrys" for "Client"; did you mean "max_retries"?  '
                   '[call-arg]'),
}


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, int, str]]:
    d = tmp_path_factory.mktemp("typing")
    files = {"good_async.py": GOOD_ASYNC, "good_sync.py": GOOD_SYNC, "bad.py": BAD}
    for name, text in files.items():
        (d / name).write_text(textwrap.dedent(text).lstrip("\n"))
    here = os.getcwd()
    os.chdir(ROOT)  # the config's mypy_path ("src") and the cache are the repository's
    try:
        out, err, _ = mypy_api.run([
            "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"),
            "--no-error-summary", "--show-error-codes", "--hide-error-context", "--no-pretty",
            *(str(d / n) for n in files)])
    finally:
        os.chdir(here)
    assert not err, err
    errors = set()
    for line in out.splitlines():
        path, _, rest = line.partition(":")
        lineno, _, rest = rest.partition(":")
        kind, _, message = rest.strip().partition(": ")
        if kind == "error":
            errors.add((Path(path).name, int(lineno), message))
    return errors


def test_correct_code_passes_mypy_strict(mypy_errors):
    assert {e for e in mypy_errors if e[0] != "bad.py"} == set()


def test_typos_and_wrong_types_fail_at_their_line(mypy_errors):
    assert mypy_errors == EXPECTED
