"""The `dsk` command line: `dsk ask`, `dsk chat`, `dsk serve --mock` (entry point: `main.main`)."""
