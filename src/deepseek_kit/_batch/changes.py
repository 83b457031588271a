"""Changed input for batch reruns (docs/batch.md#reruns-and-changed-input): `request_hash` is the hash the
journal keeps for each id's request, `check_changed` compares a rerun's input with the answered ids before any
request is made, and `ChangedInputError` is what a changed input raises without `redo_changed`.
How changed answers are taken out of the output, crash-safely, is `Journal.drop_changed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from deepseek_kit._wire.errors import UsageError

from .inputs import BatchItem, iter_items
from .journal import Journal

__all__ = ["ChangedInputError", "check_changed", "request_hash", "request_params"]

#: create() arguments that change how a request is sent, not what is asked: left out of the hash.
_NOT_HASHED = frozenset({"timeout", "max_retries"})
_hash_encode = msgspec.json.Encoder(order="deterministic", decimal_format="string").encode


def request_hash(params: Mapping[str, Any]) -> str | None:
    """A stable hash of one request as the batch sends it (`create()` arguments, defaults and
    system prompt applied): what a rerun compares to notice a changed input. None when the
    request is not JSON (an iterable input's odd values): its send fails on its own, per item."""
    body = {k: v for k, v in params.items() if k not in _NOT_HASHED}
    try:
        data = _hash_encode(body)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError, RecursionError):
        return None
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ChangedInputError(UsageError):
    """A rerun into the same output found answered ids whose request changed. `count` of them,
    `first` a few of their ids. Write to a new output, or pass `redo_changed=True`."""

    def __init__(self, output: Path, count: int, first: list[str]) -> None:
        # Ids may hold newlines or escapes (they are any string): show those quoted, on one line.
        shown = ", ".join(i if i.isprintable() else repr(i) for i in first)
        shown += ", ..." if count > len(first) else ""
        super().__init__(
            f"{count:,} id{'s' if count != 1 else ''} of the input changed since {output} was "
            f"written ({shown}): write to a new output, or re-ask exactly those with "
            "--redo-changed (redo_changed=True)")
        self.count = count
        self.first = first


def request_params(item: BatchItem, defaults: Mapping[str, Any], system: str | None) -> dict[str, Any]:
    params = {**defaults, **item.params}
    msgs = params["messages"]
    if system is not None and msgs[0].get("role") != "system":
        params["messages"] = [{"role": "system", "content": system}, *msgs]
    return params


def check_changed(jr: Journal, out: Path, inputs: Any, fmt: str | None,
                  defaults: Mapping[str, Any], system: str | None, max_record_bytes: int,
                  redo: bool) -> int:
    """Before any request of a rerun: compare the input's requests with the answered ones.
    Raises ChangedInputError, or (redo) takes the changed answers out; returns how many."""
    hashes = ((rec.key, request_hash(request_params(rec, defaults, system)))
              for rec in iter_items(inputs, fmt, max_record_bytes=max_record_bytes)
              if isinstance(rec, BatchItem))
    pairs = ((key, h) for key, h in hashes if h is not None)
    count, first = jr.mark_changed(pairs)
    if not count:
        jr.clear_changed()
        return 0
    if not redo:
        jr.clear_changed()
        raise ChangedInputError(out, count, first)
    return jr.drop_changed()
