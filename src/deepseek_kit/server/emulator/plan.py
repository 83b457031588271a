"""Per-request-body work, done once: validation, the generated answer, its encoded pieces, the
prompt's token count and its prefix-cache units - kept in a bounded LRU keyed by a hash of the raw
body (plus the path kind and the answer-shaping directives).

Load tests repeat a few bodies thousands of times; with the plan cached a request costs a hash of
its body, a dict lookup and byte splicing. Validation errors are cached too (they are as
deterministic as answers), as fresh exceptions: no traceback or context, whose frames would keep
the raw and decoded body alive. A plan keeps only what answering needs (not the decoded
messages), and the cache is bounded by count and by an estimate of bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from .cache_sim import prefix_units
from .config import EmulatorConfig
from .errors import ApiError
from .faults import Directives
from .generate import Answer, FimAnswer, generate_chat, generate_fim, seed_of
from .render import ChatPieces, FimPieces, chat_pieces, fim_pieces
from .tokens import MAX_TOKEN_CHARS, render_message, render_prompt, tokenize
from .validate import ChatRequest, FimRequest, too_deep, validate_chat, validate_fim

__all__ = ["ChatPlan", "FimPlan", "PlanCache", "prompt_tokens"]


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
    """Cache units of the prompt, and of prompt + answer (persisted
    at end of output, docs/deepseek-api-notes.md#context-caching)."""
    if not config.cache_simulation:
        return [], []
    unit = config.cache_unit
    units_in = prefix_units(tokens, unit)
    done = len(units_in) * unit
    start = units_in[-1] if units_in else b""
    units_out = prefix_units(tokens[done:] + extra, unit, start) if extra else []
    return units_in, units_out


def _weight(value: ChatPlan | FimPlan | ApiError) -> int:
    """Approximate bytes held by a cached entry (what matters is that it grows with the answer)."""
    if isinstance(value, ApiError):
        return 256 + len(value.message)
    pieces = value.pieces
    size = 512 + len(pieces.logprobs) + 40 * (len(value.units_in) + len(getattr(value, "units_out", ())))
    if isinstance(value, ChatPlan):
        size += 64 * value.answer.completion_tokens  # the token strings themselves
    else:
        size += 64 * len(value.answer.tokens)
    if isinstance(pieces, ChatPieces):
        size += len(pieces.message)
        if isinstance(pieces.deltas, list):  # LazyDeltas hold nothing but the answer
            size += sum(len(d) + len(lp) + 64 for d, lp, _ in pieces.deltas)
    else:
        size += len(pieces.text) + sum(len(t) + len(lp) + 64 for t, lp in pieces.deltas)
    return size


def _bare(exc: ApiError) -> ApiError:
    """A copy without __traceback__/__context__ (they reference the frames holding the body)."""
    return ApiError(exc.status, exc.message, exc.type, code=exc.code, headers=exc.headers)


def prompt_tokens(prompt: str, max_tokens: int | None, config: EmulatorConfig) -> list[str]:
    """The prompt's tokens, after checking prompt + max_tokens against the context length (a 400
    in DeepSeek's wording, before any answer is generated). A prompt whose size alone proves it
    too long is refused without tokenizing it; the count in that message is then a lower bound."""
    limit, completion = config.context_length, max_tokens or 0
    at_least = len(prompt) // MAX_TOKEN_CHARS
    if at_least + completion > limit:
        raise _context_error(limit, at_least, completion)
    tokens = tokenize(prompt)
    if len(tokens) + completion > limit:
        raise _context_error(limit, len(tokens), completion)
    return tokens


def _context_error(limit: int, prompt: int, completion: int) -> ApiError:
    # DeepSeek's text, e.g. https://github.com/FoundationAgents/OpenManus/issues/79
    return ApiError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                         f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
                         "completion). Please reduce the length of the messages or completion.",
                    "invalid_request_error")


#: Bodies at least this big are planned in a worker thread (see PlanCache._plan).
THREAD_BODY = 1024 * 1024
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dsk-emulator-plan")


def _safe(build: Callable[[], ChatPlan | FimPlan], raw: bytes) -> ChatPlan | FimPlan | ApiError:
    """Run a build; errors become cacheable values without traceback."""
    try:
        return build()
    except ApiError as exc:
        return _bare(exc)
    except RecursionError:  # nesting msgspec decoded but a later step could not walk
        return too_deep(raw)


class PlanCache:
    """Bounded LRU of plans (or cached validation errors): at most `plan_cache_size` entries and
    `plan_cache_bytes` estimated bytes."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lru: OrderedDict[tuple[Any, ...], tuple[ChatPlan | FimPlan | ApiError, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def _get(self, key: tuple[Any, ...]) -> ChatPlan | FimPlan | ApiError | None:
        got = self._lru.get(key)
        if got is None:
            return None
        self._lru.move_to_end(key)
        self.hits += 1
        return got[0]

    def _put(self, key: tuple[Any, ...], value: ChatPlan | FimPlan | ApiError) -> None:
        self.misses += 1
        weight = _weight(value)
        if weight > self.config.plan_cache_bytes or self.config.plan_cache_size <= 0:
            return  # one huge answer must not flush everything else
        old = self._lru.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        self._lru[key] = (value, weight)
        self.nbytes += weight
        while len(self._lru) > self.config.plan_cache_size or self.nbytes > self.config.plan_cache_bytes:
            _, (_, w) = self._lru.popitem(last=False)
            self.nbytes -= w

    def __len__(self) -> int:
        return len(self._lru)

    def entries(self) -> list[ChatPlan | FimPlan | ApiError]:
        """The cached plans and errors (for tests)."""
        return [v for v, _ in self._lru.values()]

    async def chat(self, raw: bytes, beta: bool, d: Directives) -> ChatPlan:
        got = await self._plan(("chat", beta), raw, d, lambda: self._build_chat(raw, beta, d))
        assert isinstance(got, ChatPlan)
        return got

    async def fim(self, raw: bytes, d: Directives) -> FimPlan:
        got = await self._plan(("fim", True), raw, d, lambda: self._build_fim(raw, d))
        assert isinstance(got, FimPlan)
        return got

    async def _plan(self, kind: tuple[str, bool], raw: bytes, d: Directives,
                    build: Callable[[], ChatPlan | FimPlan]) -> ChatPlan | FimPlan:
        key = (*kind, hashlib.blake2b(raw, digest_size=16).digest(), d.shaping_key())
        got = self._get(key)
        if got is None:
            if len(raw) >= THREAD_BODY:
                # A big body takes seconds of decoding, validation and tokenizing: in a worker
                # thread the event loop keeps serving everyone else meanwhile (GIL switches).
                got = await asyncio.get_running_loop().run_in_executor(_POOL, _safe, build, raw)
            else:
                got = _safe(build, raw)
            self._put(key, got)
        if isinstance(got, ApiError):
            raise _bare(got)  # a fresh copy: raising the cached one would give it a traceback
        return got

    def _build_chat(self, raw: bytes, beta: bool, d: Directives) -> ChatPlan:
        config = self.config
        req = validate_chat(raw, beta=beta, config=config)
        # every message renders as at least two tokens (its role and end markers): a huge list
        # is refused before rendering it
        at_least = 2 * len(req.messages)
        if at_least + (req.max_tokens or 0) > config.context_length:
            raise _context_error(config.context_length, at_least, req.max_tokens or 0)
        tokens = prompt_tokens(render_prompt(req.messages, req.tools), req.max_tokens, config)
        answer = generate_chat(req, d, config)
        seed = seed_of([req.messages, "logprobs"], config.seed)
        pieces = chat_pieces(answer, req.thinking, req.logprobs, req.top_logprobs, seed)
        out_msg: dict[str, Any] = {"role": "assistant", "content": "".join(answer.content)}
        if answer.tool_calls:
            out_msg["reasoning_content"] = "".join(answer.reasoning or [])
            out_msg["tool_calls"] = [
                {"function": {"name": c.name, "arguments": c.arguments}} for c in answer.tool_calls
            ]
        units_in, units_out = _units(tokens, tokenize(render_message(out_msg)), config)
        model_json = msgspec.json.encode(config.response_model(req.model))
        req.messages, req.tools = [], None  # answering needs neither: do not keep the body alive
        return ChatPlan(req, answer, pieces, model_json, len(tokens), units_in, units_out)

    def _build_fim(self, raw: bytes, d: Directives) -> FimPlan:
        config = self.config
        req = validate_fim(raw, config=config)
        prompt = "<|fim_begin|>" + req.prompt + "<|fim_hole|>" + (req.suffix or "") + "<|fim_end|>"
        tokens = prompt_tokens(prompt, req.max_tokens, config)
        answer = generate_fim(req, d, config)
        seed = seed_of([req.prompt, req.suffix, "logprobs"], config.seed)
        pieces = fim_pieces(answer, req.prompt if req.echo else None, req.logprobs, seed)
        units_in, _ = _units(tokens, [], config)
        model_json = msgspec.json.encode(config.response_model(req.model))
        req.prompt, req.suffix = "", None  # not needed to answer: do not keep the body alive
        return FimPlan(req, answer, pieces, model_json, len(tokens), units_in)

    def clear(self) -> None:
        self._lru.clear()
        self.nbytes = 0
