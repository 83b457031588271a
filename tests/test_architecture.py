"""The layer rules of docs/architecture.md, checked on the source: who may import whom, no import circles
(type-only and function-local imports included), and every module importable alone.

The graph is read with `ast` from src/deepseek_kit, so a rule breaks here before it breaks at run time.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "deepseek_kit"

# Shared leaves above the wire: settings resolution and the SQLite opener (they may raise the wire's
# UsageError). `_version` imports nothing and anything may read it.
LEAVES = {"deepseek_kit._settings", "deepseek_kit._sqlite", "deepseek_kit._lazy"}
VERSION = "deepseek_kit._version"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


MODULES = all_modules()


def _resolve(mod: str, is_pkg: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(mod: str) -> Iterator[tuple[str, int]]:
    """(imported deepseek_kit module, line) for every import in `mod`, wherever it sits."""
    path = MODULES[mod]
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "deepseek_kit":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, is_pkg, node.level, node.module)
            if target.split(".")[0] != "deepseek_kit":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # `from pkg import module` depends on the module; `from mod import name` on mod
                yield (sub if sub in MODULES else target), node.lineno


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for mod in MODULES:
        g[mod] = {t for t, _ in imports_of(mod) if t in MODULES and t != mod}
    return g


def layer(mod: str) -> str:
    """The family a module belongs to, by its package."""
    parts = mod.split(".")
    if mod in LEAVES:
        return "leaf"
    if mod == VERSION:
        return "version"
    if mod == "deepseek_kit":
        return "facade"
    if parts[1] == "server":
        if len(parts) > 2 and parts[2] in ("emulator", "gateway"):
            return f"server.{parts[2]}"
        return "server"
    return parts[1].lstrip("_")


FEATURES = {"conversation", "tools", "batch"}
# What each layer must never import (besides what is listed, it may import what is below it).
FORBIDDEN: dict[str, set[str]] = {
    "wire": {"leaf", "transport", "steps", "logs", "client", *FEATURES, "server", "server.emulator",
             "server.gateway", "cli", "facade"},
    "transport": {"leaf", "steps", "logs", "client", *FEATURES, "server", "server.emulator", "server.gateway",
                  "cli", "facade"},
    "steps": {"client", *FEATURES, "server", "server.emulator", "server.gateway", "cli", "facade"},
    "logs": {"transport", "steps", "client", *FEATURES, "server", "server.emulator", "server.gateway",
             "cli", "facade"},
    "client": {*FEATURES, "server", "server.emulator", "server.gateway", "cli", "facade"},
    "conversation": {"tools", "batch", "server", "server.emulator", "server.gateway", "cli", "facade"},
    "tools": {"conversation", "batch", "server", "server.emulator", "server.gateway", "cli", "facade"},
    "batch": {"conversation", "tools", "server", "server.emulator", "server.gateway", "cli", "facade"},
    # A stand-in that shared the client's code would share its bugs: the emulator sees only the wire.
    "server.emulator": {"leaf", "transport", "steps", "logs", "client", *FEATURES, "server.gateway", "cli",
                        "facade"},
    "server.gateway": {"server.emulator", "cli", "facade", *FEATURES},
    "server": {"cli"},
    "leaf": {"transport", "steps", "logs", "client", *FEATURES, "server", "server.emulator",
             "server.gateway", "cli", "facade"},
    # deepseek_kit.config: the public name of the settings leaf, nothing more
    "config": {"transport", "steps", "logs", "client", *FEATURES, "server", "server.emulator",
               "server.gateway", "cli", "facade"},
    "version": {"wire", "leaf", "transport", "steps", "logs", "client", *FEATURES, "server",
                "server.emulator", "server.gateway", "cli", "facade"},
}
# The one sanctioned crossing between features (docs/architecture.md): a conversation runs the tool
# loop as one of its turns. One module, one direction (tools never import conversations).
CROSSINGS = {("deepseek_kit._conversation.conversation", "deepseek_kit._tools.loop")}


def test_every_module_has_a_layer_with_rules():
    unknown = sorted({layer(m) for m in MODULES} - set(FORBIDDEN) - {"cli", "testing", "facade"})
    assert unknown == [], f"packages without import rules: {unknown} (add them to FORBIDDEN and docs)"


def test_layers_import_only_what_they_may():
    broken: list[str] = []
    for mod in MODULES:
        mine = layer(mod)
        for target, line in imports_of(mod):
            if target not in MODULES:
                continue
            theirs = layer(target)
            if theirs in ("cli", "testing") and mine != theirs:
                broken.append(f"{mod}:{line} imports {target} (nothing imports {theirs})")
            elif theirs in FORBIDDEN.get(mine, set()) and (mod, target) not in CROSSINGS:
                broken.append(f"{mod}:{line} ({mine}) imports {target} ({theirs})")
    broken = sorted(set(broken))
    assert broken == [], "layer rules broken (see docs/architecture.md):\n" + "\n".join(broken)


def test_cli_uses_public_names_only():
    """The CLI is our first user: what it needs, users may need too, so it goes through the public
    surface (`deepseek_kit`, `deepseek_kit.server`, `deepseek_kit.config`). So does the pytest
    plugin `deepseek_kit.testing`, a facade-level module like the CLI."""
    public = {"deepseek_kit", "deepseek_kit.server", "deepseek_kit.server.gateway", "deepseek_kit.config",
              "deepseek_kit._version"}
    broken = sorted({
        f"{mod}:{line} imports {target}"
        for mod in MODULES if layer(mod) in ("cli", "testing")
        for target, line in imports_of(mod)
        if target in MODULES and layer(target) != layer(mod) and target not in public
    })
    assert broken == [], "cli imports private modules:\n" + "\n".join(broken)


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(g[nxt]))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_circles():
    g = graph()
    # The facade imports everything (type-only) and re-exports it; nothing inside imports it back
    # (checked above), so it cannot close a circle: leave it out to keep reports readable.
    g.pop("deepseek_kit", None)
    for deps in g.values():
        deps.discard("deepseek_kit")
    assert _cycles(g) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _import_alone(mod: str) -> str | None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([sys.executable, "-W", "error", "-c", f"import {mod}"],
                       capture_output=True, text=True, env=env, timeout=120)
    return None if r.returncode == 0 else f"{mod}:\n{r.stderr[-1500:]}"


# ~140 interpreters: about a minute on a quiet 2-core machine, several on a busy one.
@pytest.mark.timeout(600)
def test_each_module_imports_alone_without_warnings():
    """A fresh interpreter per module: a hidden dependency on import order, or a warning at import
    time, fails here. (Run a few at a time: each is a separate process.)"""
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(_import_alone, sorted(MODULES)) if f]
    assert failures == [], "\n".join(failures)
