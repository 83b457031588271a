"""Wire layer: the DeepSeek API's shapes and rules (types, errors, SSE, dialects, pricing, tokens).

Imports nothing of deepseek_kit outside this package (except the leaves `_settings`, `_version`).
See docs/architecture.md."""
