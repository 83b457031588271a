"""Request validation: DeepSeek's statuses and exact error texts, over real sockets."""

from __future__ import annotations

import json

import aiohttp
import pytest

from deepseek_kit.server import EmulatorConfig

AUTH = {"Authorization": "Bearer sk-test-abcd", "Content-Type": "application/json"}
DESER = "Failed to deserialize the JSON body into the target type: "
USER = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def send(url: str, body, path: str = "/chat/completions"):
    data = body if isinstance(body, bytes) else compact(body)
    async with aiohttp.ClientSession() as s, s.post(url + path, data=data, headers=AUTH) as r:
        raw = await r.read()
        return r.status, json.loads(raw) if raw.strip() else None


async def expect(url, body, status, message, path="/chat/completions", type_="invalid_request_error"):
    got_status, got = await send(url, body, path)
    assert got_status == status, got
    assert got["error"] == {"message": message, "type": type_, "param": None,
                            "code": "invalid_request_error"}


def chat(**extra):
    return {"model": "deepseek-flash", "messages": USER, **extra}


# -- serde stage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "Failed to parse the request body as JSON: EOF while parsing a value at line 1 column 0"),
    (b'{"model":}', "Failed to parse the request body as JSON: expected value at line 1 column 10"),
    (b"{}", DESER + "missing field `messages` at line 1 column 2"),
    (b'{"messages":[]}', DESER + "missing field `model` at line 1 column 15"),
    (b"[1]", DESER + "invalid type: sequence, expected struct ChatCompletionRequest at line 1 column 0"),
    (b'{"model":1,"messages":[]}',
     DESER + "model: invalid type: integer `1`, expected a string at line 1 column 10"),
    (b'{"model":"deepseek-flash","messages":"hi"}',
     DESER + 'messages: invalid type: string "hi", expected a sequence at line 1 column 41'),
    (b'{"model":"deepseek-flash","messages":[{"role":"user","content":[[]]}]}',
     DESER + "messages[0]: invalid type: sequence, expected internally tagged enum ContentPart"
     " at line 1 column 68"),
    (b'{"model":"deepseek-flash","messages":[{"content":"x"}]}',
     DESER + "messages[0]: missing field `role` at line 1 column 53"),
    (b'{"model":"deepseek-flash","messages":[{"role":"bot","content":"x"}]}',
     DESER + "messages[0]: unknown variant `bot`, expected one of `system`, `user`, `assistant`, `tool`"
     " at line 1 column 66"),
    (b'{"model":"deepseek-flash","messages":[{"role":"system","content":["x"]}]}',
     DESER + "messages[0]: invalid type: sequence, expected a string at line 1 column 71"),
    (b'{"model":"deepseek-flash","messages":[{"role":"tool","content":"x"}]}',
     DESER + "messages[0]: missing field `tool_call_id` at line 1 column 67"),
    (b'{"model":"deepseek-flash","messages":[{"role":"user"}]}',
     DESER + "messages[0]: missing field `content` at line 1 column 53"),
    (b'{"model":"deepseek-flash","messages":[],"max_tokens":"10"}',
     DESER + 'max_tokens: invalid type: string "10", expected u32 at line 1 column 57'),
    (b'{"model":"deepseek-flash","messages":[],"max_tokens":-5}',
     DESER + "max_tokens: invalid value: integer `-5`, expected u32 at line 1 column 55"),
    (b'{"model":"deepseek-flash","messages":[],"stream":"yes"}',
     DESER + 'stream: invalid type: string "yes", expected a boolean at line 1 column 54'),
    (b'{"model":"deepseek-flash","messages":[],"thinking":{"type":"on"}}',
     DESER + "thinking.type: unknown variant `on`, expected `enabled` or `disabled` at line 1 column 63"),
    (b'{"model":"deepseek-flash","messages":[],"response_format":{"type":"json_schema"}}',
     DESER + "response_format.type: unknown variant `json_schema`, expected `text` or `json_object`"
     " at line 1 column 79"),
    (b'{"model":"deepseek-flash","messages":[],"reasoning_effort":"huge"}',
     DESER + "reasoning_effort: unknown variant `huge`, expected one of `minimal`, `low`, `medium`, `high`,"
     " `xhigh`, `max`, `ultra` at line 1 column 65"),
    (b'{"model":"deepseek-flash","messages":[],"temperature":"hot"}',
     DESER + 'temperature: invalid type: string "hot", expected f32 at line 1 column 59'),
    (b'{"model":"deepseek-flash","messages":[],"tool_choice":"sometimes"}',
     DESER + "tool_choice: unknown variant `sometimes`, expected one of `none`, `auto`, `required`"
     " at line 1 column 65"),
    (b'{"model":"deepseek-flash","messages":[],"tools":[{"type":"retrieval"}]}',
     DESER + "tools[0].type: unknown variant `retrieval`, expected `function` at line 1 column 68"),
    (b'{"model":"deepseek-flash","messages":[],"stop":5}',
     DESER + "stop: data did not match any variant of untagged enum Stop at line 1 column 48"),
])
async def test_deserialization_errors(emulator, raw, message):
    await expect(emulator.base_url, raw, 400, message)


async def test_multiline_body_positions(emulator):
    raw = b'{\n  "model": "deepseek-flash",\n  "messages": [\n    {"role": "bot", "content": "x"}\n  ]\n}'
    await expect(emulator.base_url, raw, 400, DESER + "messages[0]: unknown variant `bot`, expected one of "
                 "`system`, `user`, `assistant`, `tool` at line 4 column 35")


async def test_validation_status_422_profile(emulator_factory):
    emu = emulator_factory(validation_status=422)
    await expect(emu.base_url, b"{}", 422, DESER + "missing field `messages` at line 1 column 2")


async def test_unknown_fields_are_ignored(emulator):
    status, body = await send(emulator.base_url, chat(n=3, seed=1, prompt_cache_key="k", foo={"bar": 1},
                                                      frequency_penalty=1.5, presence_penalty=-1))
    assert status == 200, body


# -- semantic checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["deepseek-chat", "deepseek-reasoner", "gpt-4o", "deepseek-v3"])
async def test_retired_and_unknown_models(emulator, model):
    await expect(emulator.base_url, {"model": model, "messages": USER}, 400, "Model Not Exist")


@pytest.mark.parametrize("model", ["deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash",
                                   "deepseek-v4-flash-vision-exp"])
async def test_accepted_models_echoed(emulator, model):
    status, body = await send(emulator.base_url, {"model": model, "messages": USER})
    assert status == 200 and body["model"] == model


async def test_alias_reported_as_serving_model_when_configured(emulator_factory):
    emu = emulator_factory(echo_model_for_aliases=False)
    status, body = await send(emu.base_url, {"model": "deepseek-v4-flash", "messages": USER})
    assert status == 200 and body["model"] == "deepseek-flash"


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (393216, True), (393217, False)])
async def test_max_tokens_range(emulator, value, ok):
    if ok:
        status, _ = await send(emulator.base_url, chat(max_tokens=value))
        assert status == 200
    else:
        await expect(emulator.base_url, chat(max_tokens=value), 400,
                     "Invalid max_tokens value, the valid range of max_tokens is [1, 393216]")


async def test_empty_messages(emulator):
    await expect(emulator.base_url, {"model": "deepseek-flash", "messages": []}, 400,
                 "Invalid messages: `messages` must contain at least one message")


async def test_stop_limit(emulator):
    status, _ = await send(emulator.base_url, chat(stop=[str(i) for i in range(16)]))
    assert status == 200
    await expect(emulator.base_url, chat(stop=[str(i) for i in range(17)]), 400,
                 "Invalid stop value, the number of stop sequences must not exceed 16")


async def test_top_logprobs_rules(emulator):
    await expect(emulator.base_url, chat(logprobs=True, top_logprobs=21), 400,
                 "Invalid top_logprobs value, the valid range of top_logprobs is [0, 20]")
    await expect(emulator.base_url, chat(top_logprobs=3), 400,
                 "Invalid top_logprobs value, logprobs must be true when top_logprobs is used")
    status, _ = await send(emulator.base_url, chat(logprobs=True, top_logprobs=20))
    assert status == 200


@pytest.mark.parametrize(("user_id", "ok"), [("abc-DEF_123", True), ("a" * 512, True), ("a" * 513, False),
                                             ("has space", False), ("é", False), ("", False)])
async def test_user_id_rules(emulator, user_id, ok):
    if ok:
        assert (await send(emulator.base_url, chat(user_id=user_id)))[0] == 200
    else:
        await expect(emulator.base_url, chat(user_id=user_id), 400,
                     "Invalid user_id value, user_id must match [a-zA-Z0-9\\-_]+ and be at most 512 bytes")


async def test_temperature_checked_only_without_thinking(emulator):
    assert (await send(emulator.base_url, chat(temperature=5)))[0] == 200  # ignored in thinking mode
    await expect(emulator.base_url, chat(temperature=5, thinking={"type": "disabled"}), 400,
                 "Invalid temperature value, the valid range of temperature is [0, 2]")


async def test_tool_limits_and_names(emulator):
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]
    await expect(emulator.base_url, chat(tools=tools), 400,
                 "Invalid tools: the number of tools must not exceed 128")
    assert (await send(emulator.base_url, chat(tools=tools[:128])))[0] == 200
    bad = [{"type": "function", "function": {"name": "get weather"}}]
    await expect(emulator.base_url, chat(tools=bad), 400,
                 "Invalid tools[0].function.name: `get weather` must match ^[a-zA-Z0-9_-]{1,64}$")
    long = [{"type": "function", "function": {"name": "x" * 65}}]
    assert (await send(emulator.base_url, chat(tools=long)))[0] == 400


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
async def test_thinking_rejects_forcing_tool_choice(emulator, choice):
    await expect(emulator.base_url, chat(tools=[TOOL], tool_choice=choice), 400,
                 "Thinking mode does not support this tool_choice")
    status, _ = await send(emulator.base_url,
                           chat(tools=[TOOL], tool_choice=choice, thinking={"type": "disabled"}))
    assert status == 200


async def test_named_tool_choice_must_exist(emulator):
    await expect(emulator.base_url, chat(tools=[TOOL], thinking={"type": "disabled"},
                                         tool_choice={"type": "function", "function": {"name": "nope"}}),
                 400, "Invalid tool_choice: function `nope` is not in tools")


def _tool_history(reasoning):
    call = {"id": "call_00_x", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": "", "tool_calls": [call]}
    if reasoning is not None:
        assistant["reasoning_content"] = reasoning
    return [*USER, assistant, {"role": "tool", "tool_call_id": "call_00_x", "content": "sunny"}]


async def test_reasoning_passback_required_with_tools_in_thinking_mode(emulator):
    msgs = _tool_history(None)
    await expect(emulator.base_url, {"model": "deepseek-flash", "messages": msgs, "tools": [TOOL]}, 400,
                 "The `reasoning_content` in the thinking mode must be passed back to the API.")
    # passed back -> fine; without tools or without thinking the rule does not apply
    ok = [{"model": "deepseek-flash", "messages": _tool_history("I will call it."), "tools": [TOOL]},
          {"model": "deepseek-flash", "messages": msgs},
          {"model": "deepseek-flash", "messages": msgs, "tools": [TOOL], "thinking": {"type": "disabled"}}]
    for body in ok:
        assert (await send(emulator.base_url, body))[0] == 200


async def test_reasoning_passback_can_be_relaxed(emulator_factory):
    emu = emulator_factory(strict_reasoning_passback=False)
    body = {"model": "deepseek-flash", "messages": _tool_history(None), "tools": [TOOL]}
    assert (await send(emu.base_url, body))[0] == 200


async def test_image_parts_only_for_vision_models(emulator):
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    msgs = [{"role": "user", "content": parts}]
    assert (await send(emulator.base_url, {"model": "deepseek-flash", "messages": msgs}))[0] == 200
    status, body = await send(emulator.base_url, {"model": "deepseek-v4-pro", "messages": msgs})
    assert status == 400
    assert body["error"]["message"].startswith(
        DESER + "messages[0]: unknown variant `image_url`, expected `text`")
    text_only = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert (await send(emulator.base_url, {"model": "deepseek-v4-pro", "messages": text_only}))[0] == 200


async def test_prefix_completion_only_under_beta(emulator):
    msgs = [*USER, {"role": "assistant", "content": "```python\n", "prefix": True}]
    await expect(emulator.base_url, {"model": "deepseek-flash", "messages": msgs}, 400,
                 "Chat prefix completion is only available with base_url https://api.deepseek.com/beta")
    status, _ = await send(emulator.base_url, {"model": "deepseek-flash", "messages": msgs},
                           "/beta/chat/completions")
    assert status == 200
    early = [{"role": "assistant", "content": "x", "prefix": True}, *USER]
    await expect(emulator.base_url, {"model": "deepseek-flash", "messages": early}, 400,
                 "Invalid prefix: only the last message may set `prefix: true`", "/beta/chat/completions")


STRICT_OK = {"type": "function", "function": {"name": "f", "strict": True, "parameters": {
    "type": "object", "additionalProperties": False, "required": ["a", "b"],
    "properties": {"a": {"type": "string", "format": "email"},
                   "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}}


async def test_strict_tools_validated_under_beta_only(emulator):
    url = emulator.base_url
    ok = chat(tools=[STRICT_OK], thinking={"type": "disabled"})
    assert (await send(url, ok, "/beta/chat/completions"))[0] == 200
    bad = json.loads(json.dumps(STRICT_OK))
    bad["function"]["parameters"]["required"] = ["a"]
    body = chat(tools=[bad])
    assert (await send(url, body))[0] == 200  # strict ignored outside /beta
    await expect(url, body, 400, "Invalid schema for function 'f': (root): 'required' must list every "
                 "property; missing 'b'", "/beta/chat/completions")
    bad = json.loads(json.dumps(STRICT_OK))
    del bad["function"]["parameters"]["additionalProperties"]
    await expect(url, chat(tools=[bad]), 400, "Invalid schema for function 'f': (root): "
                 "'additionalProperties' must be set to false", "/beta/chat/completions")
    bad = json.loads(json.dumps(STRICT_OK))
    bad["function"]["parameters"]["properties"]["a"]["format"] = "date-time"
    await expect(url, chat(tools=[bad]), 400, "Invalid schema for function 'f': /properties/a: string format "
                 "'date-time' is not supported in strict mode", "/beta/chat/completions")
    mixed = [STRICT_OK, {"type": "function", "function": {"name": "g"}}]
    await expect(url, chat(tools=mixed), 400, "Invalid tools: in strict mode every function must set "
                 "`strict: true` (function 'g' does not)", "/beta/chat/completions")


# -- FIM -------------------------------------------------------------------------------------------------


async def test_fim_validation(emulator):
    url = emulator.base_url
    await expect(url, {"model": "deepseek-flash"}, 400, DESER + "missing field `prompt` at line 1 column 26",
                 "/beta/completions")
    await expect(url, {"model": "deepseek-flash", "prompt": "x", "thinking": {"type": "enabled"}}, 400,
                 "FIM completion is not supported in thinking mode", "/beta/completions")
    await expect(url, {"model": "deepseek-flash", "prompt": "x", "max_tokens": 4097}, 400,
                 "Invalid max_tokens value, the valid range of max_tokens is [1, 4096]", "/beta/completions")
    await expect(url, {"model": "deepseek-flash", "prompt": "x", "logprobs": 21}, 400,
                 "Invalid logprobs value, the valid range of logprobs is [0, 20]", "/beta/completions")
    await expect(url, {"model": "deepseek-chat", "prompt": "x"}, 400, "Model Not Exist", "/beta/completions")
    status, _ = await send(url, {"model": "deepseek-flash", "prompt": "x"}, "/completions")
    assert status == 404


async def test_validation_errors_are_cached_and_counted(emulator):
    for _ in range(3):
        await expect(emulator.base_url, b"{}", 400, DESER + "missing field `messages` at line 1 column 2")
    assert emulator.state.statuses[400] == 3
    assert emulator.state.total_requests == 3


async def test_validation_happens_after_auth(emulator_factory):
    emu = emulator_factory(EmulatorConfig(api_keys={"sk-only"}))
    status, _body = await send(emu.base_url, b"{}")
    assert status == 401
