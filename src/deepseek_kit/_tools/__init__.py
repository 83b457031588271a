"""Tools: tool definitions, JSON schema, structured output and the tool loop.

A feature on top of the client; does not import `_conversation` or `_batch`. See docs/architecture.md."""
