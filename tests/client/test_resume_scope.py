"""Resumption never corrupts an answer (docs/design-notes.md, "Stream resumption"): it is on only where prefix
completion is supported, a continuation that starts the answer again is dropped, and an
`insufficient_system_resource` finish stays a partial answer.

Against `RestartServer` (tests/helpers/restart_server.py): an OpenAI-compatible upstream on 127.0.0.1 that
ignores `prefix` and answers every request from the start, like vLLM or a proxy stripping fields.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from deepseek_kit import AsyncClient, Client, Endpoint, Resumption, StreamError, Timeout
from tests.helpers.restart_server import TEXT, USAGE, RestartServer

MSGS = [{"role": "user", "content": "Tell me something."}]


def client_for(url: str, **kw) -> AsyncClient:
    return AsyncClient(api_key="sk-scope", base_url=url, max_retries=0,
                       timeout=Timeout(first_token=10, idle=5, total=30), **kw)


async def read(client: AsyncClient, model: str = "m", **kw):
    s = await client.chat.completions.create(model=model, messages=MSGS, stream=True, **kw)
    seen: list[str] = []
    err: StreamError | None = None
    async with s:
        try:
            async for chunk in s:
                for ch in chunk.choices:
                    seen.append(ch.delta.content or "")
        except StreamError as e:
            err = e
    return s, "".join(seen), err


# -- scope: on only where prefix completion is supported ------------------------------------------

@pytest.mark.parametrize("ending", ["reset", "error"])
@pytest.mark.parametrize("beta", [True, False])
async def test_undeclared_server_is_not_resumed(ending, beta):
    async with RestartServer(ending=ending, beta=beta) as srv, client_for(srv.base_url) as c:
        s, text, err = await read(c)
    assert err is not None and text == TEXT
    assert err.partial.choices[0].message.content == TEXT
    assert len(srv.bodies) == 1 and s.resumed == 0


@pytest.mark.parametrize("ending", ["reset", "error"])
@pytest.mark.parametrize("beta", [True, False])
async def test_restarted_continuation_is_dropped_with_the_original_error(ending, beta):
    # The caller wrongly declares prefix completion: the continuation starts the answer again.
    async with RestartServer(ending=ending, beta=beta) as srv:
        async with client_for(srv.base_url) as c:
            _, _, err = await read(c, resume=False)
        async with RestartServer(ending=ending, beta=beta) as srv2, \
                client_for(srv2.base_url, prefix_completion=True) as c2:
            _, text2, err2 = await read(c2)
    assert text2 == TEXT  # nothing of the restarted continuation reached the caller
    assert err2 is not None and type(err2) is type(err) and str(err2) == str(err)
    assert err2.partial.choices[0].message.content == TEXT
    assert srv2.paths == ["/chat/completions", "/beta/chat/completions"]  # one continuation, no more
    if beta:
        last = srv2.bodies[-1]["messages"][-1]
        assert last == {"role": "assistant", "content": TEXT, "prefix": True}


async def test_restart_in_reasoning_is_detected():
    reasoning = ["The user ", "wants something; ", "think it through."]
    async with RestartServer(ending="reset", reasoning=reasoning, pieces=[]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        _, text, err = await read(c)
    assert err is not None and text == ""
    assert err.partial.choices[0].message.reasoning_content == "".join(reasoning)
    assert len(srv.bodies) == 2


async def test_reasoning_after_content_is_not_a_continuation():
    # Content was delivered; a "continuation" that thinks again started over (in thinking mode a
    # DeepSeek continuation of content never sends reasoning), even with different text.
    async with RestartServer(ending="reset", then="stop", pieces=["Different answer"],
                             later_reasoning=["Other thoughts."], later_pieces=["Another answer"]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        _, _, err = await read(c)
    assert err is not None
    assert err.partial.choices[0].message.content == "Different answer"
    assert len(srv.bodies) == 2


async def test_diverging_continuation_is_spliced():
    # A continuation that does not repeat the delivered start is accepted (held back only until it
    # diverges from it): the caller gets one seamless answer.
    async with RestartServer(ending="reset", then="stop", later_pieces=["PA", "RT two", " ends."]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        s, text, err = await read(c)
    assert err is None and s.resumed == 1
    assert text == TEXT + "PART two ends."
    final = s.get_final_completion()
    assert final.choices[0].message.content == text and final.choices[0].finish_reason == "stop"


async def test_per_call_resume_true_forces_it_and_validation_still_protects():
    async with RestartServer(ending="reset") as srv, client_for(srv.base_url) as c:
        _, text, err = await read(c, resume=True)
    assert err is not None and text == TEXT and len(srv.bodies) == 2


async def test_resumption_disabled_wins_over_declaration():
    async with RestartServer(ending="reset") as srv, \
            client_for(srv.base_url, prefix_completion=True, resumption=Resumption(enabled=False)) as c:
        _, _, err = await read(c)
    assert err is not None and len(srv.bodies) == 1


def test_detection_and_declaration():
    from deepseek_kit._client.resume import supports_prefix_completion as sup

    assert sup("https://api.deepseek.com", None) and sup("https://API.DeepSeek.com/v1", None)
    assert not sup("http://127.0.0.1:8000", None) and not sup("https://api.deepseek.com.evil.io", None)
    assert sup("http://127.0.0.1:8000", True) and not sup("https://api.deepseek.com", False)
    assert Resumption().enabled is None


# -- the emulator is opt-in -----------------------------------------------------------------------

def _fault(spec: str) -> dict[str, str]:
    return {"X-DSK-Emulate": f"{spec};key={uuid.uuid4().hex[:10]}"}


async def test_emulator_resumes_only_when_declared(emulator):
    h = _fault("reset_after=6;times=1;reasoning_tokens=0")
    async with client_for(emulator.base_url) as c:
        s, _, err = await read(c, "deepseek-flash", extra_headers=h, thinking=False)
    assert err is not None and s.resumed == 0
    h = _fault("reset_after=6;times=1;reasoning_tokens=0")
    async with client_for(emulator.base_url, prefix_completion=True) as c:
        s, _, err = await read(c, "deepseek-flash", extra_headers=h, thinking=False)
    assert err is None and s.resumed == 1
    h = _fault("reset_after=6;times=1;reasoning_tokens=0")
    ep = Endpoint(emulator.base_url, name="emu", api_key="sk-e", prefix_completion=True)
    async with AsyncClient(endpoints=[ep], max_retries=0) as c:
        s, _, err = await read(c, "deepseek-flash", extra_headers=h, thinking=False)
    assert err is None and s.resumed == 1


# -- insufficient_system_resource is a partial answer ---------------------------------------------

@pytest.mark.parametrize("declared", [False, True])
async def test_insufficient_finish_is_a_partial_answer(declared):
    # Undeclared: not resumed. Declared (wrongly): the continuation restarts and is dropped.
    async with RestartServer(ending="insufficient", then="reset") as srv, \
            client_for(srv.base_url, prefix_completion=declared) as c:
        s, text, err = await read(c)
    assert err is None and text == TEXT
    final = s.get_final_completion()
    assert final.choices[0].finish_reason == "insufficient_system_resource"
    assert final.choices[0].message.content == TEXT
    assert final.usage is not None and final.usage.completion_tokens == USAGE["completion_tokens"]
    assert len(srv.bodies) == (2 if declared else 1)


async def test_insufficient_then_broken_continuation_is_still_a_partial_answer():
    async with RestartServer(ending="insufficient", then="reset", later_pieces=[" and more"]) as srv, \
            client_for(srv.base_url, prefix_completion=True, resumption=Resumption(max_attempts=1)) as c:
        s, text, err = await read(c)
    assert err is None and text == TEXT + " and more"
    final = s.get_final_completion()
    assert final.choices[0].finish_reason == "insufficient_system_resource"
    assert final.choices[0].message.content == TEXT + " and more"


async def test_insufficient_non_stream_is_an_answer(emulator):
    async with client_for(emulator.base_url) as c:
        r = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False,
                                            extra_headers=_fault("insufficient_after=3;tokens=30"))
    assert r.choices[0].finish_reason == "insufficient_system_resource" and r.choices[0].message.content


# -- the sync twin --------------------------------------------------------------------------------

async def test_sync_client_drops_a_restart_too():
    async with RestartServer(ending="reset") as srv:
        def run() -> tuple[str, StreamError | None]:
            with Client(api_key="sk-sync", base_url=srv.base_url, max_retries=0,
                        prefix_completion=True) as c:
                seen: list[str] = []
                s = c.chat.completions.create(model="m", messages=MSGS, stream=True)
                try:
                    for chunk in s:
                        seen.extend(ch.delta.content or "" for ch in chunk.choices)
                except StreamError as e:
                    return "".join(seen), e
                return "".join(seen), None

        text, err = await asyncio.to_thread(run)
    assert err is not None and text == TEXT and err.partial.choices[0].message.content == TEXT
    assert len(srv.bodies) == 2


# -- with endpoints: continuations only where prefix completion works ----------------------------

async def test_continuation_never_goes_to_an_endpoint_without_prefix_completion(emulator):
    # The stream comes from the declared emulator, whose breaker opens at its break; the only other
    # endpoint ignores prefix. The continuation must not be sent there: it fails, and the caller
    # gets the original error with the delivered text.
    from deepseek_kit import BreakerPolicy

    async with RestartServer(ending="stop") as other:
        eps = [Endpoint(emulator.base_url, name="emu", api_key="sk-e", prefix_completion=True,
                        breaker=BreakerPolicy(failures=1)),
               Endpoint(other.base_url, name="plain", api_key="sk-p", priority=1)]
        async with AsyncClient(endpoints=eps, max_retries=0) as c:
            s, text, err = await read(c, "deepseek-flash", thinking=False,
                                      extra_headers=_fault("reset_after=6;reasoning_tokens=0"))
        assert other.bodies == []  # nothing was sent to the endpoint without prefix completion
    assert err is not None and err.partial.choices[0].message.content == text and s.resumed == 0


def test_continuation_request_names_the_allowed_endpoints(emulator):
    # Pure logic, no router merge needed: the scope computed for a stream served by "emu".
    from deepseek_kit._transport.request import Response

    eps = [Endpoint(emulator.base_url, name="emu", prefix_completion=True),
           Endpoint("http://127.0.0.1:9", name="plain"),
           Endpoint("https://api.deepseek.com", name="cloud")]
    c = AsyncClient(endpoints=eps)
    resp = Response(200, {})
    resp.endpoint = "emu"
    assert c.chat.completions._resume_scope(resp, None) == frozenset({"emu", "cloud"})
    resp.endpoint = "plain"
    assert c.chat.completions._resume_scope(resp, None) is None
    assert c.chat.completions._resume_scope(resp, True) == frozenset({"emu", "cloud"})
    assert c.chat.completions._resume_scope(resp, False) is None


def test_prefix_completion_from_config_and_bad_values(tmp_path):
    from deepseek_kit import UsageError

    cfg = tmp_path / "config.toml"
    cfg.write_text('api_key = "sk-cfg"\nbase_url = "http://127.0.0.1:9"\nprefix_completion = true\n'
                   '[[endpoints]]\nbase_url = "http://127.0.0.1:9"\nname = "e"\nprefix_completion = true\n')
    c = AsyncClient(config_file=str(cfg))
    assert c.prefix_completion is True and c.router is not None
    assert c.router.endpoint("e").ep.prefix_completion is True
    with pytest.raises(UsageError, match="prefix_completion"):
        AsyncClient(api_key="sk", base_url="http://127.0.0.1:9", prefix_completion="yes")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="enabled"):
        Resumption(enabled="auto")  # type: ignore[arg-type]
