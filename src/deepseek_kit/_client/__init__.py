"""The client: AsyncClient and its sync twin, the pipeline order, resources, streams, resumption.

May import every layer below it; never conversation, tools, batch, server or cli.
See docs/architecture.md."""
