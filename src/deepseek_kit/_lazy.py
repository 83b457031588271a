"""Lazy public namespaces (PEP 562): a name maps to the module that defines it, which is imported
on first access, so `import deepseek_kit` (and `deepseek_kit.server.gateway` for `dsk keys`) costs
almost nothing. A leaf: imports nothing of ours."""

from __future__ import annotations

import sys

# `typing` and `collections.abc` only for the type checker: importing them here would be paid by
# every `import deepseek_kit`.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(
    module: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for the package `module`: `names` maps each public name to the
    module holding it (relative to `module`, or absolute). A loaded name is stored in the package,
    so the next access is a plain attribute read."""

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        import importlib  # here, not at the top: `import deepseek_kit` should not pay for it

        value = getattr(importlib.import_module(target, module), name)
        setattr(sys.modules[module], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | set(names))

    return __getattr__, __dir__
