"""Transport layer: Request/Response, the Transport seam, the SSE event reader, timeouts and
the attempt (the innermost pipeline step).

May import `_wire` and the leaves; never steps, client or features. See docs/architecture.md."""
