"""Conversations: history, context policies, summarizers, usage totals (async and sync).

A feature on top of the client; does not import `_batch`, and of `_tools` only the tool loop
(`Conversation.run_tools`). See docs/architecture.md."""
