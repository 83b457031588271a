"""Pluggable summarizers for the `Summarize` context policy.

A summarizer turns older conversation turns (and the previous summary, if any) into one short text.
Three come with the kit:

* `ModelSummarizer(client, model=...)` (the default): asks the model itself, thinking off (a summary
  needs no chain of thought, and reasoning tokens are billed
  as output, docs/deepseek-api-notes.md#thinking-mode) and at
  a low temperature (temperature only has an effect with
  thinking off, docs/deepseek-api-notes.md#thinking-mode).
* `ExtractiveSummarizer()`: offline and dependency-free; keeps the sentences whose words are most
  frequent in the passage (classic word-frequency extraction, Luhn 1958). Hand-written because the
  libraries that do this (sumy, gensim's old `summarize`) pull in NLTK data downloads or are gone;
  the whole method is twenty lines.
* `BartSummarizer(...)`: an abstractive BART model through Hugging Face `transformers` (the seed's
  choice); an optional extra, imported only when used, with a UsageError naming the extra when
  `transformers`/`torch` are missing. Give it a model name or path (`facebook/bart-large-cnn` by
  default, which must already be in the local Hugging Face cache or be reachable), or ready-made
  `tokenizer=` and `model=` objects.

The protocol is one method, `summarize(messages, previous=None) -> str` (or an awaitable of it).
A summarizer that blocks for long (BART) sets `blocking = True` and is run in a worker thread, so
the event loop (and every other conversation on it) keeps going meanwhile.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.tokens import message_text

if TYPE_CHECKING:
    from deepseek_kit._client.client import AsyncClient
    from deepseek_kit._wire.types import Usage

__all__ = [
    "BartSummarizer",
    "ExtractiveSummarizer",
    "ModelSummarizer",
    "Summarizer",
    "transcript",
]


@runtime_checkable
class Summarizer(Protocol):
    """Anything with `summarize(messages, previous=None)` returning the summary text (or an
    awaitable of it). `messages` are chat messages (dicts) in order; `previous` is the summary that
    already covers the turns before them, to be folded into the new one."""

    def summarize(
        self, messages: Sequence[Mapping[str, Any]], previous: str | None = None
    ) -> str | Awaitable[str]:
        """The summary of `messages` with `previous` folded in, as plain text (or an awaitable of it)."""
        ...


_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool result"}


def transcript(messages: Sequence[Mapping[str, Any]], previous: str | None = None) -> str:
    """Messages as a plain transcript, one `Speaker: text` paragraph per message, led by the
    previous summary. Reasoning is left out: it is the model's scratch work, not the conversation."""
    parts: list[str] = []
    if previous:
        parts.append(f"Earlier summary: {previous.strip()}")
    for m in messages:
        role = str(m.get("role", "user"))
        text = message_text({"content": m.get("content")}, reasoning=False).strip()
        calls = [c.get("function") for c in (m.get("tool_calls") or ()) if isinstance(c, Mapping)]
        for fn in calls:
            if isinstance(fn, Mapping):
                text += f"{' ' if text else ''}[called {fn.get('name', '')}({fn.get('arguments', '')})]"
        if text:
            parts.append(f"{_ROLE_NAMES.get(role, role.title())}: {text}")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# The model itself


_SYSTEM = (
    "You write compact summaries of conversations between a user and an assistant. Keep every fact, "
    "name, number, decision, open question and instruction the user gave that later turns may need; "
    "drop pleasantries. Write plain prose in the conversation's language, at most {words} words."
)


class ModelSummarizer:
    """Summarize with a DeepSeek model: one non-streaming request, thinking off, low temperature.
    `on_usage(model, usage)` is called with each request's usage (a Conversation uses it to count
    the summaries in its token and cost tallies).

    `client`: the `AsyncClient` to ask; `model`, `temperature`, `max_tokens`: of that request;
    `max_words`: the length the model is asked to keep to; other keyword arguments go to
    `create()` as they are."""

    blocking = False

    def __init__(
        self,
        client: AsyncClient,
        *,
        model: str = "deepseek-flash",
        temperature: float = 0.3,
        max_words: int = 200,
        max_tokens: int = 1024,
        on_usage: Callable[[str, Usage], None] | None = None,
        **create_kwargs: Any,
    ) -> None:
        self.client = client
        self.model = model
        self.temperature = temperature
        self.max_words = max_words
        self.max_tokens = max_tokens
        self.on_usage = on_usage
        self.create_kwargs = create_kwargs

    def __repr__(self) -> str:
        return f"ModelSummarizer(model={self.model!r}, temperature={self.temperature})"

    async def summarize(self, messages: Sequence[Mapping[str, Any]], previous: str | None = None) -> str:
        """One request to the model with the transcript of `messages` (and `previous`): its answer,
        or an `ExtractiveSummarizer` summary when the answer is empty."""
        text = transcript(messages, previous)
        resp = await self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": _SYSTEM.format(words=self.max_words)},
                {"role": "user", "content": "Summarize this conversation:\n\n" + text},
            ],
            thinking={"type": "disabled"},
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            **self.create_kwargs,
        )
        if self.on_usage is not None and resp.usage is not None:
            self.on_usage(resp.model or self.model, resp.usage)
        content: str | None = resp.choices[0].message.content if resp.choices else None
        if not content or not content.strip():
            # An empty answer must not erase what the turns said: fall back to an offline summary.
            return ExtractiveSummarizer(max_chars=self.max_words * 6).summarize(messages, previous)
        return content.strip()


# ---------------------------------------------------------------------------------------------
# Offline, extractive

# Sentence ends: ASCII and full-width (CJK) . ! ?
_ENDS = ".!?\u3002\uff01\uff1f"
_SENTENCE_RE = re.compile(f"[^{_ENDS}\\n]+(?:[{_ENDS}]+|\\n|$)")
_WORD_RE = re.compile(r"\w+", re.UNICODE)
#: Common English function words; they say nothing about what a passage is about.
_STOPWORDS = frozenset(" ".join((
    "a an and are as at be been but by can could did do does for from had has have he her his how i",
    "if in into is it its just me my no not of on or our she so than that the their them then there",
    "these they this to too us was we were what when where which who why will with would you your",
    "yes ok okay please thanks thank",
)).split())


class ExtractiveSummarizer:
    """Offline word-frequency extraction: score each sentence by the average corpus frequency of
    its content words, keep the best ones up to `max_chars` (at most `max_sentences`), in their
    original order, each led by its speaker. Deterministic; no dependencies."""

    blocking = False

    def __init__(self, *, max_chars: int = 800, max_sentences: int = 12) -> None:
        if max_chars < 1 or max_sentences < 1:
            raise UsageError("ExtractiveSummarizer needs max_chars >= 1 and max_sentences >= 1")
        self.max_chars = max_chars
        self.max_sentences = max_sentences

    def __repr__(self) -> str:
        return f"ExtractiveSummarizer(max_chars={self.max_chars}, max_sentences={self.max_sentences})"

    @staticmethod
    def _words(text: str) -> list[str]:
        return [w for w in (m.lower() for m in _WORD_RE.findall(text)) if w not in _STOPWORDS and len(w) > 1]

    def summarize(self, messages: Sequence[Mapping[str, Any]], previous: str | None = None) -> str:
        """The best sentences of `previous` and `messages`, in order, within `max_chars`."""
        sentences: list[tuple[str, str]] = []  # (speaker, sentence)
        if previous:
            sentences += [("", s) for s in self._split(previous)]
        for m in messages:
            speaker = _ROLE_NAMES.get(str(m.get("role", "")), "")
            text = message_text({"content": m.get("content")}, reasoning=False)
            sentences += [(speaker, s) for s in self._split(text)]
        if not sentences:
            return previous or ""
        freq = Counter(w for _, s in sentences for w in self._words(s))
        top = max(freq.values(), default=1)

        def score(item: tuple[int, tuple[str, str]]) -> tuple[float, int]:
            i, (_, s) = item
            words = self._words(s)
            if not words:
                return (0.0, -i)
            # Average normalized frequency, damped for very long sentences so one run-on line
            # does not take the whole budget.
            avg = sum(freq[w] / top for w in words) / len(words)
            return (avg * (1.0 + math.log(len(words))) / (1.0 + len(s) / 400), -i)

        ranked = sorted(enumerate(sentences), key=score, reverse=True)
        chosen: list[int] = []
        used = 0
        for i, (speaker, s) in ranked:
            cost = len(s) + (len(speaker) + 2 if speaker else 0) + 1
            if chosen and used + cost > self.max_chars:
                continue
            chosen.append(i)
            used += cost
            if len(chosen) >= self.max_sentences:
                break
        out: list[str] = []
        last_speaker = None
        for i in sorted(chosen):
            speaker, s = sentences[i]
            if speaker and speaker != last_speaker:
                out.append(f"{speaker}: {s}")
            else:
                out.append(s)
            last_speaker = speaker
        summary = " ".join(out)
        return summary[: self.max_chars].rstrip()

    @staticmethod
    def _split(text: str) -> list[str]:
        return [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]


# ---------------------------------------------------------------------------------------------
# BART through transformers (optional extra)

_BART_EXTRA = ("BartSummarizer needs the optional packages transformers and torch: "
               "pip install 'deepseek-kit[bart]' (or: pip install transformers torch)")


class BartSummarizer:
    """Abstractive summaries with a BART model (`transformers`, optional extra `[bart]`).

    `model_name_or_path` is loaded with `AutoTokenizer`/`AutoModelForSeq2SeqLM.from_pretrained` on
    first use (default `facebook/bart-large-cnn`; it must be cached locally or downloadable); or pass
    ready `tokenizer=` and `model=` objects. The transcript is truncated to `max_input_tokens` (BART
    reads 1,024 positions), the summary is at most `max_summary_tokens` and at least
    `min_summary_tokens`, found by beam search over `num_beams` beams, on `device` ("cuda", "cpu"...;
    default: where the model was loaded). Generation runs under `torch.inference_mode()` in a
    worker thread (`blocking = True`)."""

    blocking = True

    def __init__(
        self,
        model_name_or_path: str = "facebook/bart-large-cnn",
        *,
        tokenizer: Any = None,
        model: Any = None,
        max_input_tokens: int = 1024,
        max_summary_tokens: int = 160,
        min_summary_tokens: int = 0,
        num_beams: int = 4,
        device: str | None = None,
    ) -> None:
        self._require()
        self.model_name_or_path = model_name_or_path
        self.tokenizer = tokenizer
        self.model = model
        self.max_input_tokens = max_input_tokens
        self.max_summary_tokens = max_summary_tokens
        self.min_summary_tokens = min_summary_tokens
        self.num_beams = num_beams
        self.device = device
        self._ready = False

    def __repr__(self) -> str:
        return f"BartSummarizer({self.model_name_or_path!r})"

    @staticmethod
    def _require() -> None:
        import importlib.util

        for name in ("transformers", "torch"):
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):  # ValueError: blocked (sys.modules[name] is None)
                found = False
            if not found:
                raise UsageError(f"{_BART_EXTRA}; {name} is not installed")

    def _load(self) -> tuple[Any, Any]:
        if not self._ready:
            self._prepare()
        return self.tokenizer, self.model

    def _prepare(self) -> None:
        if self.tokenizer is None or self.model is None:
            try:
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
            except ImportError as exc:  # pragma: no cover - checked in __init__
                raise UsageError(f"{_BART_EXTRA} ({exc})") from None
            if self.tokenizer is None:
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_name_or_path)
            if self.model is None:
                self.model = AutoModelForSeq2SeqLM.from_pretrained(self.model_name_or_path)
        # Inference mode for a model passed in too: dropout off, so summaries are deterministic.
        self.model.eval()
        if self.device:
            self.model.to(self.device)
        self._ready = True

    def summarize(self, messages: Sequence[Mapping[str, Any]], previous: str | None = None) -> str:
        """The model's summary of `previous` and `messages` (loads the model on first use)."""
        import torch

        tokenizer, model = self._load()
        text = transcript(messages, previous)
        inputs = tokenizer(text, truncation=True, max_length=self.max_input_tokens, return_tensors="pt")
        inputs.pop("token_type_ids", None)  # BART has no segment embeddings
        if self.device:
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            ids = model.generate(
                **inputs,
                max_new_tokens=self.max_summary_tokens,
                min_length=self.min_summary_tokens,
                num_beams=self.num_beams,
                early_stopping=self.num_beams > 1,
            )
        summary = tokenizer.decode(ids[0], skip_special_tokens=True, clean_up_tokenization_spaces=True)
        return str(summary).strip()
