"""Gateway state in Redis (placeholder until the Redis backend lands)."""

from __future__ import annotations

from .state_common import StateBase

__all__ = ["RedisState"]


class RedisState(StateBase):
    def __init__(self, url: str, **kwargs: object) -> None:
        raise NotImplementedError("the Redis gateway state is not written yet")
