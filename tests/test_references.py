"""The repository cites only itself and public URLs.

Whoever clones the repository must be able to follow every reference in it. So, in src/, tests/,
docs/, bench/, scripts/, README.md and pyproject.toml:

* no path outside the repository (the research notes and design file the project started from
  are not part of it): cite docs/deepseek-api-notes.md, docs/architecture.md or a public URL;
* no tracker issue numbers: say what the code does and why, or name the docs/ page that records
  the finding;
* every `docs/<page>.md` and `docs/<page>.md#<anchor>` reference (also `..., #<another>` after it)
  in src/, docs/, tests/, bench/ and the README, and every relative Markdown link between docs/
  pages, points at a file that exists and, when an anchor is given, at a heading of that file.

The patterns are assembled from pieces so that this file does not match them itself.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest


def _repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "deepseek_kit").is_dir():
            return parent
    raise AssertionError("tests/test_references.py is not inside the repository")


ROOT = _repo_root()
SCANNED = ("src", "tests", "docs", "bench", "scripts", "README.md", "pyproject.toml")
LINKED_FROM = ("src", "tests", "docs", "bench", "README.md")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".sh", ".cfg", ".ini", ".yaml", ".yml", ".json",
                 ".lua", ".conf", ".rst", ".pyi"}
SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules", ".venv"}

#: What may not appear, and what to write instead.
FORBIDDEN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:\.\./)+" + "shared" + r"\b"), "a path outside the repository"),
    (re.compile("/work" + "/shared"), "a path outside the repository"),
    (re.compile("DESIGN" + r"\.md"), "the design file outside the repository; cite docs/architecture.md"),
    (re.compile("deepseek-api" + r"\.md"),
     "the research notes outside the repository; cite a section of docs/deepseek-api-notes.md"),
    # A bare section number was a citation of those external notes; an RFC's sections are fine.
    (re.compile(r"(?<!RFC \d{4} )(?<!RFC \d{3} )" + "\u00a7" + r"\s?\d"),
     "a section of the external research notes; cite a section of docs/deepseek-api-notes.md"),
    # The word, singular or plural, then a number with or without `#` (examples in the last test);
    # not a `/issues/<n>` URL, nor `PR #<n>` or `project#<n>`, which name other projects' threads.
    (re.compile(r"\biss" + r"ues?[ \t]*#?[ \t]*\d+", re.IGNORECASE),
     "a tracker issue number; say why, or cite the docs/ page that records it"),
)

#: `docs/<page>.md` or `docs/<dir>/<page>.md`, optionally with `#<anchor>`, and more anchors of the
#: same page after it (`docs/<page>.md#<one>, #<two>`).
DOC_REF = re.compile(r"(?<![\w.-])docs/((?:[\w-]+/)*[\w.-]+\.md)((?:#[\w-]+)(?:,\s*#[\w-]+)*)?")
#: A relative Markdown link target inside docs/: `](name.md#anchor)`, `](#anchor)`.
MD_LINK = re.compile(r"\]\(((?![a-z][a-z0-9+.-]*:)[^)\s#]*)(?:#([^)\s]+))?\)")


def _files(entries: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for entry in entries:
        path = ROOT / entry
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += sorted(p for p in path.rglob("*")
                          if p.is_file() and p.suffix in TEXT_SUFFIXES
                          and not SKIPPED_DIRS.intersection(p.relative_to(ROOT).parts))
    return out


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(path: Path) -> frozenset[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in _text(path).splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        directive = re.match(r":::\s+([\w.]+)\s*$", line)
        if directive is not None and not fenced:
            # a mkdocstrings directive (docs/reference/) renders a heading anchored at its path
            anchors.add(directive.group(1))
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or m is None:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(anchors)


def _where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


def test_no_reference_outside_the_repository_or_to_an_issue_number() -> None:
    problems = []
    for path in _files(SCANNED):
        text = _text(path)
        for pattern, why in FORBIDDEN:
            for m in pattern.finditer(text):
                problems.append(f"{_where(path, text, m.start())}: {m.group(0)!r} is {why}")
    assert not problems, "\n".join(problems)


def test_docs_references_point_at_existing_files_and_headings() -> None:
    problems = []
    for path in _files(LINKED_FROM):
        text = _text(path)
        for m in DOC_REF.finditer(text):
            target = ROOT / "docs" / m.group(1)
            for anchor in re.findall(r"#([\w-]+)", m.group(2) or "") or [None]:
                problems += _check(path, text, m.start(), target, anchor)
    for path in _files(("docs",)):
        if path.suffix != ".md":
            continue
        text = _text(path)
        for m in MD_LINK.finditer(text):
            name = m.group(1)
            if name and not name.endswith(".md"):
                continue  # a link to code or an image: only Markdown pages have headings
            target = (path.parent / name).resolve() if name else path
            problems += _check(path, text, m.start(), target, m.group(2))
    assert not problems, "\n".join(problems)


def _check(path: Path, text: str, pos: int, target: Path, anchor: str | None) -> list[str]:
    where = _where(path, text, pos)
    if not target.is_file():
        return [f"{where}: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} "
                "does not exist"]
    if anchor and anchor not in _anchors(target):
        return [f"{where}: {target.relative_to(ROOT)} has no heading for #{anchor}"]
    return []


@pytest.mark.parametrize("heading, slug", [
    ("Streaming and keep-alives", "streaming-and-keep-alives"),
    ("Prefix completion (beta)", "prefix-completion-beta"),
    ("`import deepseek_kit` is lazy (PEP 562)", "import-deepseek_kit-is-lazy-pep-562"),
    ("Routing and failover (`_router.py`, `_breaker.py`)", "routing-and-failover-_routerpy-_breakerpy"),
])
def test_slugs_follow_github(heading: str, slug: str) -> None:
    assert _slug(heading) == slug


def test_the_patterns_catch_what_they_must_and_spare_the_rest() -> None:
    caught = ["(iss" "ue 10)", "iss" "ue #8", "Iss" "ues 7 and 8", "see ../" "shared/x",
              "DES" "IGN.md", "deepseek-" "api.md", "(\u00a7" "6.3)"]
    spared = ["docs/deepseek-api-notes.md#thinking-mode", "github.com/x/y/iss" "ues/170",
              "PR #16109", "ollama#15457", "an issue with keep-alives", "tissue 5",
              "(RFC 9110 \u00a7" "15.5.8)", "RFC 6749 \u00a7" "4.4"]
    for text in caught:
        assert any(p.search(text) for p, _ in FORBIDDEN), text
    for text in spared:
        assert not any(p.search(text) for p, _ in FORBIDDEN), text
