"""Per-request-body work, done once: validation, the generated answer, its encoded pieces, the
prompt's token count and its prefix-cache units - kept in a bounded LRU keyed by a hash of the raw
body (plus the path kind and the answer-shaping directives).

Load tests repeat a few bodies thousands of times; with the plan cached a request costs a hash of
its body, a dict lookup and byte splicing. Validation errors are cached too (they are as
deterministic as answers).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from .cache_sim import prefix_units
from .config import EmulatorConfig
from .errors import ApiError
from .faults import Directives
from .generate import Answer, FimAnswer, generate_chat, generate_fim, seed_of
from .render import ChatPieces, FimPieces, chat_pieces, fim_pieces
from .tokens import render_message, render_prompt, tokenize
from .validate import ChatRequest, FimRequest, validate_chat, validate_fim

__all__ = ["ChatPlan", "FimPlan", "PlanCache"]


@dataclass(slots=True)
class ChatPlan:
    req: ChatRequest
    answer: Answer
    pieces: ChatPieces
    model_json: bytes
    prompt_tokens: int
    units_in: list[bytes]
    units_out: list[bytes]


@dataclass(slots=True)
class FimPlan:
    req: FimRequest
    answer: FimAnswer
    pieces: FimPieces
    model_json: bytes
    prompt_tokens: int
    units_in: list[bytes]


def _units(tokens: list[str], extra: list[str], config: EmulatorConfig) -> tuple[list[bytes], list[bytes]]:
    """Cache units of the prompt, and of prompt + answer (persisted at end of output, §5.8)."""
    if not config.cache_simulation:
        return [], []
    unit = config.cache_unit
    units_in = prefix_units(tokens, unit)
    done = len(units_in) * unit
    start = units_in[-1] if units_in else b""
    units_out = prefix_units(tokens[done:] + extra, unit, start) if extra else []
    return units_in, units_out


class PlanCache:
    """Bounded LRU of plans (or cached validation errors)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lru: OrderedDict[tuple[Any, ...], ChatPlan | FimPlan | ApiError] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _get(self, key: tuple[Any, ...]) -> ChatPlan | FimPlan | ApiError | None:
        got = self._lru.get(key)
        if got is not None:
            self._lru.move_to_end(key)
            self.hits += 1
        return got

    def _put(self, key: tuple[Any, ...], value: ChatPlan | FimPlan | ApiError) -> None:
        self.misses += 1
        self._lru[key] = value
        if len(self._lru) > self.config.plan_cache_size:
            self._lru.popitem(last=False)

    def chat(self, raw: bytes, beta: bool, d: Directives) -> ChatPlan:
        key = ("chat", beta, hashlib.blake2b(raw, digest_size=16).digest(), d.shaping_key())
        got = self._get(key)
        if got is None:
            try:
                got = self._build_chat(raw, beta, d)
            except ApiError as exc:
                got = exc
            self._put(key, got)
        if isinstance(got, ApiError):
            raise got
        assert isinstance(got, ChatPlan)
        return got

    def fim(self, raw: bytes, d: Directives) -> FimPlan:
        key = ("fim", True, hashlib.blake2b(raw, digest_size=16).digest(), d.shaping_key())
        got = self._get(key)
        if got is None:
            try:
                got = self._build_fim(raw, d)
            except ApiError as exc:
                got = exc
            self._put(key, got)
        if isinstance(got, ApiError):
            raise got
        assert isinstance(got, FimPlan)
        return got

    def _build_chat(self, raw: bytes, beta: bool, d: Directives) -> ChatPlan:
        config = self.config
        req = validate_chat(raw, beta=beta, config=config)
        answer = generate_chat(req, d, config)
        seed = seed_of([req.messages, "logprobs"], config.seed)
        pieces = chat_pieces(answer, req.thinking, req.logprobs, req.top_logprobs, seed)
        tokens = tokenize(render_prompt(req.messages, req.tools))
        out_msg: dict[str, Any] = {"role": "assistant", "content": "".join(answer.content)}
        if answer.tool_calls:
            out_msg["reasoning_content"] = "".join(answer.reasoning or [])
            out_msg["tool_calls"] = [
                {"function": {"name": c.name, "arguments": c.arguments}} for c in answer.tool_calls
            ]
        units_in, units_out = _units(tokens, tokenize(render_message(out_msg)), config)
        model_json = msgspec.json.encode(config.response_model(req.model))
        return ChatPlan(req, answer, pieces, model_json, len(tokens), units_in, units_out)

    def _build_fim(self, raw: bytes, d: Directives) -> FimPlan:
        config = self.config
        req = validate_fim(raw, config=config)
        answer = generate_fim(req, d, config)
        seed = seed_of([req.prompt, req.suffix, "logprobs"], config.seed)
        pieces = fim_pieces(answer, req.prompt if req.echo else None, req.logprobs, seed)
        prompt = "<|fim_begin|>" + req.prompt + "<|fim_hole|>" + (req.suffix or "") + "<|fim_end|>"
        tokens = tokenize(prompt)
        units_in, _ = _units(tokens, [], config)
        model_json = msgspec.json.encode(config.response_model(req.model))
        return FimPlan(req, answer, pieces, model_json, len(tokens), units_in)

    def clear(self) -> None:
        self._lru.clear()
