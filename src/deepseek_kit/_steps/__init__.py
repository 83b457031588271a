"""Pipeline steps: auth, retry, router, breaker, logs; limits/, cache/, metrics/.

May import `_wire`, `_transport`, `_logs` and the leaves; never the client or features.
See docs/architecture.md."""
