"""Deterministic answers: the same request body always gives the same reasoning, content, tool
calls and token counts (the seed is a hash of what shapes the answer, plus `EmulatorConfig.seed`).

What it produces, following docs/deepseek-api-notes.md:

* thinking mode: reasoning tokens first (length by `reasoning_effort`),
  then the answer (docs/deepseek-api-notes.md#streaming-and-keep-alives);
* tool calls: when tools are offered and the last turn is the user's (or tool_choice forces it),
  call the tools the user message names, else the tools that fit it, in parallel (distinct
  indexes), else the first tool (`tool_pick.py`); after a `tool` result, answer in text.
  Arguments are generated from each tool's JSON schema (`schema_values.py`) and are always
  valid JSON;
* JSON mode (docs/deepseek-api-notes.md#json-output), when a prompt mentions "json": an object
  valid against the JSON schema the prompt carries (what `parse()` sends), else mimicking the
  first example object found in the prompt (`json_mode.py`); otherwise only spaces;
* prefix completion (docs/deepseek-api-notes.md#prefix-completion-beta):
  a continuation of the assistant prefix (code, then a closing fence,
  when the prefix opened a ``` block). When the prefix (content, and `reasoning_content` in
  thinking mode) is exactly the start of the answer the same conversation without it would get,
  the continuation is the rest of that answer, token for token, like a real model at temperature
  0: a broken stream resumed by prefix completion then equals
  the unbroken one (docs/design-notes.md, "Stream resumption");
* `max_tokens` caps reasoning + answer: a reasoning-starved answer is `content: ""` with
  `finish_reason: "length"` (docs/deepseek-api-notes.md#thinking-mode);
  `insufficient_after` cuts the answer (docs/deepseek-api-notes.md#response-objects).
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from .config import EmulatorConfig
from .errors import ApiError
from .faults import Directives
from .json_mode import json_object, prompt_text
from .schema_values import WORDS, ArgumentBudget, SchemaError, text_tokens, value_from_schema
from .tokens import tokenize
from .tool_pick import pick_tools
from .validate import ChatRequest, FimRequest

__all__ = [
    "WORDS", "Answer", "FimAnswer", "ToolCallOut", "generate_chat", "generate_fim", "seed_of", "text_tokens",
]

_CODE = (
    "    result = value + 1\n", "    if not items:\n        return None\n", "    total += item\n",
    "    return result\n", "    print(data)\n", "    for item in items:\n", "    count = len(items)\n",
    "    data = load(path)\n", "    key = item.name\n", "    out.append(key)\n",
)
_EFFORT_FACTOR = {"low": 0.5, "high": 1.0, "max": 2.0}
_ALNUM = string.ascii_letters + string.digits


@dataclass(slots=True)
class ToolCallOut:
    id: str
    name: str
    arguments: str
    fragments: list[str]  # argument pieces, one per stream chunk
    tokens: int


@dataclass(slots=True)
class Answer:
    reasoning: list[str] | None  # None when thinking is off
    content: list[str]
    tool_calls: list[ToolCallOut]
    finish_reason: str
    chunk_tokens: int

    @property
    def reasoning_tokens(self) -> int:
        return len(self.reasoning) if self.reasoning is not None else 0

    @property
    def completion_tokens(self) -> int:
        return self.reasoning_tokens + len(self.content) + sum(c.tokens for c in self.tool_calls)


def seed_of(material: Any, config_seed: int) -> int:
    data = msgspec.json.encode([material, config_seed], order="sorted")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _code_text(rng: random.Random, n_tokens: int) -> str:
    parts: list[str] = []
    size = 0
    while size < n_tokens:
        line = rng.choice(_CODE)
        parts.append(line)
        size += len(tokenize(line))
    return "".join(parts)


# -- chat answers -----------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _json_content(req: ChatRequest, rng: random.Random, n: int, limit: int, schema: bool) -> list[str]:
    if "json" not in prompt_text(req.messages).lower():
        return []
    obj = json_object(req.messages, rng, limit, schema)
    if obj is None:
        obj = {"answer": "".join(text_tokens(rng, max(4, n - 10))), "confidence": round(rng.random(), 2)}
    return tokenize(json.dumps(obj, ensure_ascii=False))


def _continuation(req: ChatRequest, rng: random.Random, n: int) -> list[str]:
    prefix = _text(req.messages[-1].get("content"))
    # an open code fence: code, then close it (docs/deepseek-api-notes.md#prefix-completion-beta)
    if prefix.count("```") % 2 == 1:
        code = _code_text(rng, max(1, n - 8))
        return tokenize(code + "```\n") + text_tokens(rng, 6, lead_space=True)
    return text_tokens(rng, n, lead_space=bool(prefix) and not prefix[-1:].isspace())


def _apply_stops(tokens: list[str], stops: tuple[str, ...]) -> tuple[list[str], bool]:
    if not stops or not tokens:
        return tokens, False
    text = "".join(tokens)
    cut = min((i for i in (text.find(s) for s in stops if s) if i != -1), default=-1)
    if cut == -1:
        return tokens, False
    out: list[str] = []
    pos = 0
    for t in tokens:
        if pos + len(t) > cut:
            if cut > pos:
                out.append(t[: cut - pos])
            break
        out.append(t)
        pos += len(t)
    return out, True


def _pieces(tokens: list[str], size: int) -> list[str]:
    return ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]


def _tool_calls(req: ChatRequest, rng: random.Random, chunk: int, limit: int,
                parallel_default: bool) -> list[ToolCallOut]:
    out = []
    parallel = req.parallel_tools if req.parallel_tools is not None else parallel_default
    for index, tool in enumerate(pick_tools(req, parallel)):
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        try:
            value = value_from_schema(params, rng, params, budget=ArgumentBudget(limit))
        except SchemaError as exc:  # wording ours, as in schema_rules
            raise ApiError(400, f"Invalid schema for function '{fn['name']}': {exc}",
                           "invalid_request_error") from None
        args = json.dumps(value if value is not None else {}, ensure_ascii=False)
        toks = tokenize(args)
        call_id = f"call_{index:02d}_" + "".join(rng.choice(_ALNUM) for _ in range(24))
        out.append(ToolCallOut(call_id, fn["name"], args, _pieces(toks, chunk), len(toks) + 3))
    return out


def _truncate_call(call: ToolCallOut, budget: int, chunk: int) -> ToolCallOut:
    toks = tokenize(call.arguments)[: max(budget - 3, 0)]
    args = "".join(toks)
    return ToolCallOut(call.id, call.name, args, _pieces(toks, chunk), min(call.tokens, budget))


def generate_chat(req: ChatRequest, d: Directives, config: EmulatorConfig) -> Answer:
    # max_tokens and stop only cut the answer, so they are not part of the seed: a capped answer
    # is a prefix of the uncapped one, as with a real model at temperature 0.
    if req.prefix:
        resumed = _resume(req, d, config)
        if resumed is not None:
            return resumed
    # Directives that only cut the answer (insufficient_after, finish) are not part of the seed
    # either, so the cut answer is a prefix of the whole one.
    material = [req.model, req.thinking, req.effort, req.messages, req.tools, req.tool_choice,
                req.tool_name, req.json_mode, req.prefix, [d.tokens, d.reasoning_tokens, d.chunk_tokens]]
    rng = random.Random(seed_of(material, config.seed))
    chunk = d.chunk_tokens or config.chunk_tokens
    n_content = d.tokens if d.tokens is not None else config.default_tokens
    reasoning: list[str] | None = None
    if req.thinking:
        n_r = d.reasoning_tokens
        if n_r is None:
            n_r = round(config.default_reasoning_tokens * _EFFORT_FACTOR[req.effort])
        reasoning = ["Let", " me", " think", " about", " this", ".", *text_tokens(rng, n_r, True)][:n_r]
    calls = _tool_calls(req, rng, chunk, config.max_tool_argument_chars, config.parallel_tool_calls)
    finish = "tool_calls" if calls else "stop"
    content: list[str] = []
    if calls:
        pass
    elif req.json_mode:
        content = _json_content(req, rng, n_content, config.max_tool_argument_chars, not d.ignore_schema)
        # no "json" in the prompt: the API returns only spaces (docs/deepseek-api-notes.md#json-output)
        if not content:
            if config.json_without_hint == "until_limit":
                limit = (req.max_tokens or 4096) - (len(reasoning) if reasoning else 0)
                content, finish = [" "] * max(limit, 0), "length"
            else:
                content = [" "] * n_content
    elif req.prefix:
        content = _continuation(req, rng, n_content)
    else:
        content = text_tokens(rng, n_content)
    content, _ = _apply_stops(content, req.stop)
    if d.insufficient_after is not None and len(content) > d.insufficient_after * chunk:
        content, finish = content[: d.insufficient_after * chunk], "insufficient_system_resource"
    if req.max_tokens is not None:
        budget = req.max_tokens
        starved = reasoning is not None and len(reasoning) >= budget
        if reasoning is not None and starved and (content or calls or len(reasoning) > budget):
            # docs/deepseek-api-notes.md#thinking-mode
            reasoning, content, calls, finish = reasoning[:budget], [], [], "length"
        else:
            left = budget - (len(reasoning) if reasoning else 0)
            if len(content) > left:
                content, finish = content[:left], "length"
            kept = []
            for call in calls:
                if left <= 0:
                    finish = "length"
                    break
                if call.tokens > left:
                    call, finish = _truncate_call(call, left, chunk), "length"
                kept.append(call)
                left -= call.tokens
            calls = kept
    if d.finish is not None:
        finish = d.finish
    return Answer(reasoning, content, calls, finish, chunk)


def _rest(tokens: list[str], done: str) -> list[str] | None:
    """The tokens after the text `done`, which must be a prefix of their concatenation (split
    inside a token when the break fell there); None when it is not a prefix."""
    pos = 0
    for i, t in enumerate(tokens):
        if pos == len(done):
            return tokens[i:]
        end = pos + len(t)
        if end > len(done):
            if not t.startswith(done[pos:]):
                return None
            return [t[len(done) - pos:], *tokens[i + 1:]]
        if done[pos:end] != t:
            return None
        pos = end
    return [] if pos == len(done) else None


def _resume(req: ChatRequest, d: Directives, config: EmulatorConfig) -> Answer | None:
    """Continue, token for token, the answer this prefix was cut from (see the module docstring)."""
    last = req.messages[-1]
    base = replace(req, messages=req.messages[:-1], prefix=False, max_tokens=None, stop=())
    if not base.messages or base.messages[-1].get("role") not in ("user", "tool"):
        return None
    full = generate_chat(base, d.without_failures(), config)
    if full.tool_calls:
        return None
    p_content = _text(last.get("content"))
    p_reason = last.get("reasoning_content") or ""
    reasoning: list[str] | None = None
    if full.reasoning is not None and p_reason != "".join(full.reasoning):
        # cut inside the reasoning: the rest of it, then the whole answer
        if p_content:
            return None
        reasoning = _rest(full.reasoning, p_reason)
        if reasoning is None:
            return None
        rest: list[str] | None = list(full.content)
    else:
        if full.reasoning is not None:
            reasoning = []  # thinking on, reasoning already complete
        rest = _rest(full.content, p_content)
    if rest is None:
        return None
    content, _ = _apply_stops(rest, req.stop)
    finish = full.finish_reason
    if d.insufficient_after is not None and len(content) > d.insufficient_after * full.chunk_tokens:
        content, finish = content[: d.insufficient_after * full.chunk_tokens], "insufficient_system_resource"
    if req.max_tokens is not None:
        left = req.max_tokens - (len(reasoning) if reasoning else 0)
        if left < 0:
            reasoning, content, finish = (reasoning or [])[: req.max_tokens], [], "length"
        elif len(content) > left:
            content, finish = content[:left], "length"
    if d.finish is not None:
        finish = d.finish
    return Answer(reasoning, content, [], finish, full.chunk_tokens)


# -- FIM ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class FimAnswer:
    tokens: list[str]
    finish_reason: str
    chunk_tokens: int


def generate_fim(req: FimRequest, d: Directives, config: EmulatorConfig) -> FimAnswer:
    material = [req.model, req.prompt, req.suffix, list(d.shaping_key())]
    rng = random.Random(seed_of(material, config.seed))
    chunk = d.chunk_tokens or config.chunk_tokens
    n = d.tokens if d.tokens is not None else config.default_tokens
    tokens = tokenize(_code_text(rng, n))[:n]
    tokens, _ = _apply_stops(tokens, req.stop)
    finish = "stop"
    if d.insufficient_after is not None and len(tokens) > d.insufficient_after * chunk:
        tokens, finish = tokens[: d.insufficient_after * chunk], "insufficient_system_resource"
    if req.max_tokens is not None and len(tokens) > req.max_tokens:
        tokens, finish = tokens[: req.max_tokens], "length"
    if d.finish is not None:
        finish = d.finish
    return FimAnswer(tokens, finish, chunk)
