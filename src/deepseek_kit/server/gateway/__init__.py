"""The gateway (`dsk serve --config`): a DeepSeek-correct relay with virtual keys and budgets."""
