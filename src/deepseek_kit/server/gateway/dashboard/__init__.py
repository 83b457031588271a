"""The gateway's web dashboard at `/dashboard` (docs/gateway.md): an admin login, usage and cost
charts, live request stats, upstream health and balances, and key and OAuth-client management.

`routes.py` serves the page, its assets (static/, shipped in the package: no build step, no CDN)
and the JSON endpoints; `session.py` holds sessions, CSRF and the login rate limit, and
`shared_sessions.py` keeps sessions in the SQLite or Redis state for several workers; `live.py` the
rolling window of finished requests; `stats.py` the aggregation of usage rows and health.
"""

from __future__ import annotations

from .live import LiveStats
from .routes import DashboardSources, add_dashboard_routes

__all__ = ["DashboardSources", "LiveStats", "add_dashboard_routes"]
