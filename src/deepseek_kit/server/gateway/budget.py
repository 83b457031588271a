"""Budget arithmetic shared by the state backends: money as integer nano-units, the Beijing-time
daily and monthly windows, the `Reservation` handle, usage rows and the in-memory usage buffer.

Why nano-units: DeepSeek's smallest per-token price is USD 0.003 per 1M tokens off-peak
(3e-9 per token, docs/pricing.md), so integers of 1e-9 of the currency hold every cost exactly,
add without rounding in SQLite and in Redis Lua (doubles are exact to 2^53, i.e. 9 million units of
currency per counter), and never become floats. Reservations round up, costs round half-up.

Windows follow DeepSeek's billing day, Beijing time (UTC+8, no daylight saving): a key's daily
budget covers 00:00-24:00 Beijing time, its monthly budget the Beijing calendar month. A request is
charged to the windows it was admitted in, so a reservation and its settlement always meet.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from deepseek_kit._wire.pricing import BEIJING

from .lease import Lease

__all__ = [
    "NANO",
    "Reservation",
    "UsageBuffer",
    "UsageRow",
    "from_nanos",
    "to_nanos",
    "windows",
]

NANO = Decimal("1e-9")
_ID_PREFIX = secrets.token_hex(8)
_ids = itertools.count(1)


def _new_id_space() -> None:
    """After fork() the child must not repeat its parent's ids (workers started by forking)."""
    global _ID_PREFIX, _ids
    _ID_PREFIX, _ids = secrets.token_hex(8), itertools.count(1)


os.register_at_fork(after_in_child=_new_id_space)
_SCALE = Decimal(1_000_000_000)


def to_nanos(amount: Decimal, *, up: bool = False) -> int:
    """`amount` in integer 1e-9 units; `up` rounds toward +infinity (reservations, budgets never
    round in the caller's favour)."""
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {amount}")
    return int((amount * _SCALE).to_integral_value(ROUND_CEILING if up else ROUND_HALF_UP))


def from_nanos(n: int) -> Decimal:
    """Integer nano-units back to a Decimal amount."""
    return (Decimal(n) / _SCALE).normalize() if n else Decimal(0)


def windows(at: datetime) -> tuple[str, str]:
    """The (day, month) billing windows of instant `at`: ("2026-12-03", "2026-12"), Beijing time."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    # Beijing days start on a whole UTC hour (UTC+8), so the windows are constant within an hour:
    # remember the last hour's (formatting costs more than the rest of a hold's CPU).
    global _last
    hour = int(at.timestamp() // 3600)
    last = _last  # one tuple, replaced whole: safe to read from any thread
    if hour != last[0]:
        bj = at.astimezone(BEIJING)
        last = _last = (hour, bj.strftime("%Y-%m-%d"), bj.strftime("%Y-%m"))
    return last[1], last[2]


_last: tuple[int | None, str, str] = (None, "", "")


@dataclass(frozen=True, slots=True)
class Reservation:
    """A budget hold made at admission, to `settle` (or `release`) once. `held` False: the key has
    no budget, nothing was held and settling only records spend. `lease`: the amount was drawn from
    this process's lease of the key's budget (lease.py) instead of held on its own."""

    id: str
    key_id: str
    amount: Decimal
    day: str
    month: str
    model: str = ""
    held: bool = True
    lease: Lease | None = None

    @staticmethod
    def new_id() -> str:
        """Unique across processes: a random per-process prefix and a counter (cheaper than
        asking the OS for randomness per request)."""
        return f"{_ID_PREFIX}{next(_ids):x}"


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Spend of one key on one model on one Beijing day."""

    day: str
    model: str
    requests: int
    cost: Decimal


class UsageBuffer:
    """Per (key, day, model) request counts and costs accumulated in memory by `settle`, written to
    the store in batches by the backend's flusher (off the request path). Aggregated, so its size is
    bounded by keys x models x days between flushes, never by the request count."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], list[int]] = {}

    def add(self, key_id: str, day: str, model: str, nanos: int) -> None:
        """Count one request of `nanos` cost."""
        row = self._rows.get((key_id, day, model))
        if row is None:
            self._rows[(key_id, day, model)] = [1, nanos]
        else:
            row[0] += 1
            row[1] += nanos

    def take(self) -> dict[tuple[str, str, str], list[int]]:
        """Everything counted so far, leaving the buffer empty."""
        rows, self._rows = self._rows, {}
        return rows

    def put_back(self, rows: dict[tuple[str, str, str], list[int]]) -> None:
        """A failed flush: merge its rows back so the next flush writes them."""
        for (k, d, m), (n, c) in rows.items():
            row = self._rows.setdefault((k, d, m), [0, 0])
            row[0] += n
            row[1] += c

    def __len__(self) -> int:
        return len(self._rows)


def default_clock() -> Callable[[], datetime]:
    """The library's clock (`_wire.pricing.default_clock`: the system clock, or DSK_FAKE_NOW) as
    aware UTC datetimes; the environment is read once, here."""
    from deepseek_kit._wire.pricing import default_clock as epoch_clock

    clock = epoch_clock()
    return lambda: datetime.fromtimestamp(clock(), timezone.utc)


def day_of(since: date | None) -> str:
    return since.isoformat() if since is not None else "0000-00-00"
