"""The README (and the docs' guides) tell the truth: every example runs as shown.

* Each ```python block is a complete program (imports included): it runs in a fresh interpreter and,
  where the document shows its output right after it, prints exactly that (tests/helpers/doc_blocks.py
  says what may differ: ids, clock times, durations, rates).
* All python blocks and the example files together pass `mypy --strict` (one run).
* Each terminal session (`$ command` lines) runs in a fresh folder holding a copy of examples/, with
  a private DSK_HOME, no API key, and the pricing clock pinned to an off-peak hour (DSK_FAKE_NOW):
  DeepSeek bills peak hours at twice these prices, which the README says next to its costs.
* Every file the README tells the reader to use (examples/...) exists.

Nothing reaches beyond 127.0.0.1: commands that would need DeepSeek use `--mock`, the emulator, or
show the error a missing key gives.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.doc_blocks import (
    Block,
    blocks,
    commands,
    doc_env,
    make_workdir,
    run_python,
    run_session,
)

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md"]
EXAMPLE_FILES = sorted((ROOT / "examples").glob("*.py"))


def _all_blocks() -> list[Block]:
    return [b for doc in DOCUMENTS for b in blocks(doc)]


BLOCKS = _all_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
SESSIONS = [b for b in BLOCKS if b.lang == "" and b.text.startswith("$ ")]


def _diff(doc: str, got: str) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(doc.splitlines(), got.splitlines(), "document", "actual",
                                          lineterm=""))


def test_blocks_were_found() -> None:
    """The parser sees the README's examples (a parser that finds nothing would pass everything)."""
    readme = [b for b in BLOCKS if b.path.name == "README.md"]
    assert sum(b.lang == "python" for b in readme) >= 3
    assert sum(b in SESSIONS for b in readme) >= 4
    assert all(b.output is not None for b in readme if b.lang == "python"), (
        "every python block of the README shows what it prints")


@pytest.mark.parametrize("block", SESSIONS, ids=[b.name for b in SESSIONS])
def test_terminal_session(block: Block, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    env = doc_env(tmp_path)
    cmds = commands(block)
    ran = run_session([c.line for c in cmds], cwd=work, env=env, tty=block.tty)
    for cmd, (got, code) in zip(cmds, ran, strict=True):
        assert code == cmd.exit_code, f"$ {cmd.line}\nexit {code}, the document says {cmd.exit_code}\n{got}"
        want, have = block.normalize(cmd.expected), block.normalize(got)
        assert have == want, f"$ {cmd.line}\n{_diff(want, have)}"


@pytest.mark.parametrize("block", PYTHON, ids=[b.name for b in PYTHON])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    done = run_python(block, tmp_path)
    assert done.returncode == 0, f"{block.name} failed:\n{done.stderr[-3000:]}"
    if block.output is not None:
        want, have = block.normalize(block.output), block.normalize(done.stdout)
        assert have == want, f"{block.name}\n{_diff(want, have)}"


def test_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """Every python block of the README and of docs/ (guides and topic pages) and every example file,
    as a user copies it, passes `mypy --strict` (the guides' examples also run: tests/test_docs.py)."""
    from mypy import api

    files: list[str] = []
    docs = [b for page in sorted((ROOT / "docs").rglob("*.md")) for b in blocks(page) if b.lang == "python"]
    for i, block in enumerate(PYTHON + docs):
        stem = re.sub(r"\W", "_", block.path.stem)
        f = tmp_path / f"{stem}_line{block.line}_{i}.py"
        f.write_text(block.text)
        files.append(str(f))
    files += [str(f) for f in EXAMPLE_FILES]
    out, err, status = api.run([
        "--strict", "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary", *files])
    assert status == 0, f"mypy --strict on {len(files)} examples:\n{out}{err}"


def test_files_the_readme_names_exist() -> None:
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\bexamples/[\w./-]+\.\w+", text))
    assert named, "the README points at its example files"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"the README names files that do not exist: {missing}"


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[f.name for f in EXAMPLE_FILES])
def test_example_file_runs(example: Path, tmp_path: Path) -> None:
    """The example files the README points to run as they are (tools.py only defines tools)."""
    block = Block(example, 1, "python", example.read_text())
    done = run_python(block, tmp_path)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stderr[-3000:]}"
