"""The DeepSeek API emulator (see `deepseek_kit.server` for its public names).

Imports only `_wire` and the leaves: a stand-in that shared the client's code would share its bugs.
See docs/emulator.md and docs/architecture.md."""
