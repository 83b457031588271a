"""The import cuts inside two step families: the metrics record and the limits vocabulary are
leaves, and no module of either family imports another in a circle (type-only imports included).

Read from the source (every `import` / `from ... import` statement, also under TYPE_CHECKING
and inside functions), so a circle hidden behind a lazy import is caught too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import deepseek_kit

PKG = Path(deepseek_kit.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute (relative imports resolved)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            # `from . import x` / `from .pkg import mod`: the names may be modules themselves
            out.update(f"{target}.{a.name}" for a in node.names)
    return out


def family(folder: str) -> dict[str, set[str]]:
    """The modules of one package and, for each, which of its siblings it imports."""
    files = sorted((PKG / folder).glob("*.py"))
    names = {_module_name(f) for f in files}
    return {_module_name(f): imports_of(f) & names - {_module_name(f)} for f in files}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def ours(imports: set[str]) -> set[str]:
    return {i for i in imports if i == "deepseek_kit" or i.startswith("deepseek_kit.")}


@pytest.mark.parametrize("folder", ["_steps/metrics", "_steps/limits"])
def test_no_import_circle_in_the_family(folder):
    assert cycle(family(folder)) is None


def test_the_request_record_is_a_leaf():
    got = imports_of(PKG / "_steps/metrics/record.py")
    assert ours(got) == set()
    third_party = {i.split(".")[0] for i in got} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"msgspec"}


@pytest.mark.parametrize("sink", ["summary", "prometheus", "otel"])
def test_metrics_sinks_import_the_record_not_the_step(sink):
    got = ours(imports_of(PKG / f"_steps/metrics/{sink}.py"))
    assert "deepseek_kit._steps.metrics.step" not in got
    assert not any(i.startswith("deepseek_kit._steps.metrics.step.") for i in got)


def test_public_request_record_is_the_leaf_class():
    from deepseek_kit._steps.metrics import record, step

    assert deepseek_kit.RequestRecord is record.RequestRecord is step.RequestRecord


def test_limits_backends_import_only_the_vocabulary():
    fam = family("_steps/limits")
    base = "deepseek_kit._steps.limits.base"
    assert fam[base] == set()
    assert fam["deepseek_kit._steps.limits.local"] == {base}
    assert fam["deepseek_kit._steps.limits.redis"] <= {base, "deepseek_kit._steps.limits.lua"}
    assert {base, "deepseek_kit._steps.limits.local", "deepseek_kit._steps.limits.redis"} <= (
        fam["deepseek_kit._steps.limits.step"])


def test_public_limits_names_are_the_vocabulary_classes():
    from deepseek_kit._steps.limits import base, step

    for name in ("Adaptive", "LimitBackendError", "Limits", "QueueTimeoutError"):
        assert getattr(deepseek_kit, name) is getattr(base, name) is getattr(step, name)


def test_internal_names_say_their_job():
    """One class per name: the wire's tool definition is `ToolParam`, the public `Tool` wraps a
    function; the helper structs are named for the fields they hold."""
    from deepseek_kit._steps.cache import key
    from deepseek_kit._steps.limits import base, step
    from deepseek_kit._tools import tool
    from deepseek_kit._wire import types
    from deepseek_kit.cli import batch

    assert deepseek_kit.Tool is tool.Tool and not hasattr(types, "Tool")
    assert set(types.ToolParam.__struct_fields__) == {"function", "type"}
    assert set(key.CacheRuleFields.__struct_fields__) == {"thinking", "temperature"}
    assert set(step._ModelAndMaxTokens.__struct_fields__) == {"model", "max_tokens"}
    assert hasattr(base, "_BodyUsage") and hasattr(batch, "_ProgressBar") and hasattr(batch, "_ProgressLines")
    gone = ((key, "Probe"), (step, "_Head"), (base, "_Tail"), (batch, "_Live"), (batch, "_Plain"))
    for module, old in gone:
        assert not hasattr(module, old), old
    from deepseek_kit._steps import router

    assert hasattr(router, "_EndpointState") and not hasattr(router, "_Live")
