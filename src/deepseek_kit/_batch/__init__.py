"""Batch runs: input parsing, the journal, output files, change detection and the runner.

A feature on top of the client; does not import `_conversation` or `_tools`. See docs/architecture.md."""
