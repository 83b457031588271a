"""`open_state`: the gateway state named by a URL (SQLite for one host, Redis for several).

The factory lives apart from the key vocabulary (`keys.py`) so that the backends import the
vocabulary and nothing imports back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .keys import GatewayKeyError, GatewayState, check_pepper

__all__ = ["open_state"]


def open_state(
    url: str, *, pepper: bytes, clock: Callable[[], datetime] | None = None,
    reservation_ttl: float = 900.0,
) -> GatewayState:
    """Open the state at `url`: `sqlite:///abs/path.db`, `sqlite:///:memory:` or
    `redis://host:port/db` (also `rediss://`, `unix://`). `pepper` keys the token hash (at least
    16 bytes); `clock` gives the time for expiry and budget windows (default: `_wire.pricing.now`, which
    honours DSK_FAKE_NOW). A reservation not settled within `reservation_ttl` seconds is released."""
    check_pepper(pepper)
    if url.startswith("sqlite://"):
        from .state_sqlite import SqliteState

        return SqliteState(url, pepper=pepper, clock=clock, reservation_ttl=reservation_ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .state_redis import RedisState

        return RedisState(url, pepper=pepper, clock=clock, reservation_ttl=reservation_ttl)
    raise GatewayKeyError(f"unsupported gateway state URL {url.split('://', 1)[0]!r}: use "
                          "sqlite:///path/to/gateway.db or redis://host:port/db")
