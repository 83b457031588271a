"""Fixtures shared by the gateway state tests (keys, budgets): the state URL of each backend (a
SQLite file, or the session's redis-server)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gw.db"
    return request.getfixturevalue("redis_url")
