"""The documentation site documents every public name, and its guide examples run.

* Every name of the public namespaces' `__all__` is on a reference page (docs/reference/*.md) as a
  mkdocstrings directive (`::: deepseek_kit.Name`, or the whole module), so no public name is
  missing from the site. The strict build itself (`mkdocs build --strict`, run by scripts/test)
  checks that each directive resolves and each link and anchor exists.
* Every public function, and each public class's constructor, names each of its parameters in its
  docstring (the class docstring counts for a class; a base class of ours counts for a subclass,
  as the reference shows it). The code's docstrings are prose: a parameter is documented when
  its name appears as a word. The gaps that remain are listed in KNOWN_GAPS; a new gap fails,
  and so does a listed one that has been closed (take it off the list).
* Every ```python block of docs/guide/*.md and docs/index.md is a complete program: it runs to
  the end against a fresh emulator (DEEPSEEK_BASE_URL), with its own DSK_HOME, and prints what
  the output block right after it shows (compared as tests/test_readme.py compares the README:
  ids, clock times and durations may differ; costs are at an off-peak hour). A block that defines
  pytest tests is run by pytest.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deepseek_kit.server import EmulatorThread
from tests.helpers.doc_blocks import Block, blocks, commands, doc_env, make_workdir, run_session

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

#: The public namespaces; `deepseek_kit.testing` joins when it exists (its reference page is
#: reference/testing.md, enabled by the two ENABLE-TESTING lines of mkdocs.yml).
MODULES = ["deepseek_kit", "deepseek_kit.server", "deepseek_kit.server.gateway", "deepseek_kit.config"]
if importlib.util.find_spec("deepseek_kit.testing") is not None:
    MODULES.append("deepseek_kit.testing")

DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)


def _resolve(path: str) -> object:
    """The object a directive names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise AssertionError(f"cannot import {path}")


def documented() -> tuple[set[str], list[object]]:
    """(directive paths, the objects they name) over all reference pages; a module directive
    documents every name of its `__all__`."""
    paths: set[str] = set()
    for page in sorted(REFERENCE.glob("*.md")):
        if page.name == "testing.md" and "deepseek_kit.testing" not in MODULES:
            continue  # written ahead of the module; mkdocs.yml leaves it out until then
        paths.update(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    objects: list[object] = []
    for path in sorted(paths):
        obj = _resolve(path)
        objects.append(obj)
        if inspect.ismodule(obj):
            objects.extend(getattr(obj, name) for name in getattr(obj, "__all__", ()))
    return paths, objects


def test_reference_pages_cover_every_public_name() -> None:
    paths, objects = documented()
    missing = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if f"{modname}.{name}" in paths or modname in paths:
                continue
            # A re-export (deepseek_kit.server.GatewayConfig) is covered where its home page has it;
            # constants are matched by identity too (PRESETS, STATE_KEY...).
            if any(obj is o for o in objects):
                continue
            missing.append(f"{modname}.{name}")
    assert not missing, ("public names missing from docs/reference/*.md (add a `::: module.Name` "
                         "line to the page it belongs on):\n  " + "\n  ".join(missing))


def test_every_reference_page_is_in_the_navigation() -> None:
    nav = "\n".join(line for line in (ROOT / "mkdocs.yml").read_text(encoding="utf-8").splitlines()
                    if not line.lstrip().startswith("#") and "ENABLE-TESTING" not in line)
    pages = {p.relative_to(DOCS).as_posix() for p in REFERENCE.glob("*.md")}
    if "deepseek_kit.testing" not in MODULES:
        pages.discard("reference/testing.md")  # waits for the module (ENABLE-TESTING in mkdocs.yml)
    absent = sorted(p for p in pages if p not in nav)
    assert not absent, f"reference pages not in mkdocs.yml's nav: {absent}"


# ---------------------------------------------------------------------------------------------
# Parameters named in docstrings

#: Public callables whose docstrings do not yet name these parameters: none now (structs and
#: dataclasses list their fields in an `Attributes:` section, which the reference renders as a
#: table). Keep it empty: document a new parameter rather than listing it here.
KNOWN_GAPS: dict[str, set[str]] = {}


def _params(obj: object) -> list[str]:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.name not in ("self", "cls") and not p.name.startswith("_")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _docs_of(obj: object) -> str:
    """The docstring the reference shows for `obj`: a class's own, its `__init__`'s and those of
    its base classes of ours (a subclass of `APIStatusError` documents its fields there)."""
    text = inspect.getdoc(obj) or ""
    if inspect.isclass(obj):
        init = obj.__dict__.get("__init__")
        text += "\n" + ((init.__doc__ or "") if init is not None else "")
        for base in obj.__mro__[1:]:
            if (getattr(base, "__module__", "") or "").startswith("deepseek_kit"):
                text += "\n" + (base.__doc__ or "")
    return text


def parameter_gaps() -> dict[str, set[str]]:
    gaps: dict[str, set[str]] = {}
    seen: set[int] = set()
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            if not (getattr(obj, "__module__", "") or "").startswith("deepseek_kit"):
                continue
            text = _docs_of(obj)
            missing = {p for p in _params(obj) if not re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text)}
            if missing:
                gaps[f"{modname}.{name}"] = missing
    return gaps


def test_public_callables_name_their_parameters_in_their_docstrings() -> None:
    gaps = parameter_gaps()
    new = {k: sorted(v - KNOWN_GAPS.get(k, set())) for k, v in gaps.items()}
    new = {k: v for k, v in new.items() if v}
    closed = {k: sorted(v - gaps.get(k, set())) for k, v in KNOWN_GAPS.items()}
    closed = {k: v for k, v in closed.items() if v}
    assert not new, ("parameters no docstring mentions (say what each is for, in the function's or "
                     "the class's docstring):\n  " + "\n  ".join(f"{k}: {v}" for k, v in sorted(new.items())))
    assert not closed, ("documented now, take them off KNOWN_GAPS in tests/test_docs.py:\n  "
                        + "\n  ".join(f"{k}: {v}" for k, v in sorted(closed.items())))


def test_the_parameter_check_sees_a_gap() -> None:
    """The check itself: a function whose docstring skips a parameter is reported."""

    def f(alpha: int, beta: int) -> None:
        """Uses `alpha`."""

    text = _docs_of(f)
    assert _params(f) == ["alpha", "beta"]
    assert re.search(r"(?<!\w)alpha(?!\w)", text) and not re.search(r"(?<!\w)beta(?!\w)", text)


# ---------------------------------------------------------------------------------------------
# Guide examples run, and print what the guides show

GUIDES = [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))]
EXAMPLES = [b for page in GUIDES for b in blocks(page) if b.lang == "python"]


def test_the_guides_have_examples() -> None:
    assert len(EXAMPLES) >= 15, [b.name for b in EXAMPLES]
    shown = [b for b in EXAMPLES if b.output is not None]
    assert len(shown) >= 15, "the guides show what their examples print"


def run_example(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run one example as a reader would after `dsk serve --mock` and
    `export DEEPSEEK_BASE_URL=... DEEPSEEK_API_KEY=sk-test`: a fresh emulator (`times=N` fault
    counters live as long as the server), a private DSK_HOME, the pricing clock at the off-peak
    hour the docs' costs are shown at. A block that defines pytest tests is run by pytest."""
    folder.mkdir()
    pytest_file = "def test_" in block.text
    script = folder / ("test_example.py" if pytest_file else "example.py")
    script.write_text(block.text, encoding="utf-8")
    env = doc_env(folder)
    with EmulatorThread() as emu:
        env.update(DEEPSEEK_BASE_URL=emu.base_url, DEEPSEEK_API_KEY="sk-test")
        argv = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", str(script)]
                if pytest_file else [sys.executable, str(script)])
        return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=180)


def _check_example(block: Block, folder: Path) -> str | None:
    """The failure text for one example, or None when it ran and printed what its page shows."""
    done = run_example(block, folder)
    if done.returncode != 0:
        return f"{block.name} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}"
    if not done.stdout.strip():
        return f"{block.name} printed nothing"
    if block.output is None or "def test_" in block.text:
        return None  # a pytest file's page shows the pytest command, not its exact report
    want, have = block.normalize(block.output), block.normalize(done.stdout)
    if want != have:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), have.splitlines(), "page", "actual",
                                              lineterm=""))
        return f"{block.name} printed something else than its page shows:\n{diff}"
    return None


def test_every_guide_example_runs_and_prints_what_its_page_shows(tmp_path: Path) -> None:
    """Each example is its own process (they are programs, with `asyncio.run` and module-level
    code); four at a time, since most of their time is interpreter start-up and the emulator.
    `python -m tests.test_docs` (from the repository root) rewrites the shown outputs from fresh runs."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda ib: _check_example(ib[1], tmp_path / f"ex{ib[0]}"),
                                enumerate(EXAMPLES)))
    failures = [r for r in results if r is not None]
    assert not failures, "\n\n".join(failures)


SESSIONS = [b for page in GUIDES for b in blocks(page) if b.lang == "" and b.text.startswith("$ ")]


def _check_session(block: Block, tmp: Path) -> str | None:
    """A terminal session of a guide, run as tests/test_readme.py runs the README's: a fresh folder
    with a copy of examples/, a private DSK_HOME, no key, the off-peak pricing clock."""
    tmp.mkdir()
    cmds = commands(block)
    ran = run_session([c.line for c in cmds], cwd=make_workdir(tmp), env=doc_env(tmp), tty=block.tty)
    for cmd, (got, code) in zip(cmds, ran, strict=True):
        if code != cmd.exit_code:
            return f"{block.name}: $ {cmd.line}\nexit {code}, the page says {cmd.exit_code}\n{got}"
        want, have = block.normalize(cmd.expected), block.normalize(got)
        if want != have:
            diff = "\n".join(difflib.unified_diff(want.splitlines(), have.splitlines(), "page", "actual",
                                                  lineterm=""))
            return f"{block.name}: $ {cmd.line}\n{diff}"
    return None


def test_the_guides_terminal_sessions_print_what_they_show(tmp_path: Path) -> None:
    assert len(SESSIONS) >= 6, [b.name for b in SESSIONS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda ib: _check_session(ib[1], tmp_path / f"s{ib[0]}"),
                                enumerate(SESSIONS)))
    failures = [r for r in results if r is not None]
    assert not failures, "\n\n".join(failures)


def _session_text(block: Block, tmp: Path) -> list[str]:
    cmds = commands(block)
    ran = run_session([c.line for c in cmds], cwd=make_workdir(tmp), env=doc_env(tmp), tty=block.tty)
    body: list[str] = []
    for cmd, (out, code) in zip(cmds, ran, strict=True):
        body.append("$ " + cmd.line)
        text = out.replace("\r\n", "\n").strip("\n")
        if text:
            body.extend(line.rstrip() for line in text.split("\n"))
        if code:
            body.append(f"[exit {code}]")
    return body


def _update() -> None:
    """Rewrite each shown output with what its example prints now (after changing an example)."""
    import tempfile

    for page in GUIDES:
        lines = page.read_text(encoding="utf-8").split("\n")
        for block in reversed(blocks(page)):
            if block in SESSIONS:
                with tempfile.TemporaryDirectory() as tmp:
                    body = _session_text(block, Path(tmp))
                lines[block.line:block.line + len(block.text.rstrip("\n").split("\n"))] = body
                continue
            if block.lang != "python" or block.output is None or "def test_" in block.text:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                done = run_example(block, Path(tmp) / "ex")
            if done.returncode:
                raise SystemExit(f"{block.name} failed:\n{done.stderr}")
            start = block.line + len(block.text.rstrip("\n").split("\n")) + 2
            n = len(block.output.rstrip("\n").split("\n")) if block.output.strip() else 0
            lines[start:start + n] = done.stdout.rstrip("\n").split("\n")
        page.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    _update()
