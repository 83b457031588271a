"""Metrics: the per-call record, the step that builds it, the summary and the sinks."""
