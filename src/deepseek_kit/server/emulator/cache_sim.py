"""Prefix-cache simulation: how many prompt tokens DeepSeek would report as cache hits.

Measured behaviour (2026-08-09, docs/deepseek-api-notes.md#context-caching): hit = floor(common
prefix / 128) x 128 tokens, exact; the trailing 0-127 tokens never hit; one earlier request with the
same prefix is enough. Caches are isolated per account and per `user_id`
(docs/deepseek-api-notes.md#context-caching). Units are persisted at the end of
each request's input and at the end of its output (so the next turn of a conversation, which resends
the answer, hits up to there) - docs/deepseek-api-notes.md#what-the-emulator-reproduces.

Implementation: a prompt is cut into 128-token blocks; `prefix_units` chains a hash over the blocks,
so unit k identifies the exact first k x 128 tokens. A scope (account, user_id) stores unit hashes;
a lookup finds the longest stored unit. Each request costs one set lookup per unit, and the units
of a request body are computed once and cached with its answer. Storage is a bounded LRU.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["PrefixCache", "prefix_units"]


def prefix_units(tokens: Sequence[str], unit: int = 128, start: bytes = b"") -> list[bytes]:
    """Chained hashes of every complete `unit`-token prefix: element k-1 stands for tokens[:k*unit].
    `start` continues a chain (the hash of the previous complete unit)."""
    out: list[bytes] = []
    h = start
    for end in range(unit, len(tokens) + 1, unit):
        block = "\x1f".join(tokens[end - unit : end]).encode("utf-8", "surrogatepass")
        h = hashlib.blake2b(h + block, digest_size=12).digest()
        out.append(h)
    return out


class PrefixCache:
    """Per-scope sets of persisted unit hashes, evicted least-recently-used over all scopes."""

    def __init__(self, unit: int = 128, capacity: int = 1_000_000) -> None:
        self.unit = unit
        self.capacity = capacity
        self._units: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()

    def lookup(self, account: str, user_id: str | None, units: Sequence[bytes]) -> int:
        """Cache-hit tokens for a prompt whose unit hashes are `units`."""
        scope = user_id or ""
        store = self._units
        for k in range(len(units) - 1, -1, -1):
            key = (account, scope, units[k])
            if key in store:
                store.move_to_end(key)
                return (k + 1) * self.unit
        return 0

    def store(self, account: str, user_id: str | None, units: Sequence[bytes]) -> None:
        scope = user_id or ""
        store = self._units
        for u in units:
            key = (account, scope, u)
            if key in store:
                store.move_to_end(key)
            else:
                store[key] = None
        while len(store) > self.capacity:
            store.popitem(last=False)

    def clear(self) -> None:
        self._units.clear()

    def __len__(self) -> int:
        return len(self._units)
