"""Fixtures shared by the gateway state tests (keys, budgets): the state URL of each backend (a
SQLite file, or the session's redis-server), and a state on it with an injected clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from deepseek_kit.server.gateway.state import open_state
from tests.helpers.clock import Clock

BUDGET_PEPPER = b"test-pepper-0123456789abcdef"
#: Wednesday 2026-12-02 23:30 Beijing time (15:30 UTC): the `state` fixture's clock starts here.
BUDGET_T0 = datetime(2026, 12, 2, 15, 30, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gw.db"
    return request.getfixturevalue("redis_url")


@pytest.fixture
async def state(state_url):
    """A gateway state on `state_url` whose clock (`state.clock`, settable `.at`) starts at BUDGET_T0."""
    clock = Clock(BUDGET_T0)
    st = open_state(state_url, pepper=BUDGET_PEPPER, clock=clock, reservation_ttl=900)
    st.clock = clock
    yield st
    await st.aclose()
