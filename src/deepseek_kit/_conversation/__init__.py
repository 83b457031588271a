"""Conversations: history, context policies, summarizers, usage totals (async and sync).

A feature on top of the client; does not import `_tools` or `_batch`. See docs/architecture.md."""
