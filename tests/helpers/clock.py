"""A clock the test moves by hand, for code that takes an injected `clock()` (expiry, budget
windows, Beijing peak hours): no test depends on the real hour or weekday."""

from __future__ import annotations

from datetime import datetime


class Clock:
    """`clock()` returns `clock.at`; set `clock.at = ...` to move time."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at
