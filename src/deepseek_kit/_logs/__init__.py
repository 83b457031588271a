"""Request logs: the SQLite store, its background writer, queries and migrations.

May import `_wire` and the leaves; never steps or the client. See docs/architecture.md."""
