"""The suite's own guard: every test starts without the developer's DeepSeek variables, proxies or
home folder (the autouse fixture of tests/conftest.py), whatever the shell that ran pytest set."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import PROXY_VARS


@pytest.fixture(scope="module", autouse=True)
def _a_polluted_shell() -> object:
    # Set before the per-test fixture runs, as a developer's shell would have them.
    saved = dict(os.environ)
    os.environ.update(DEEPSEEK_API_KEY="sk-real-key-of-the-developer", DSK_CONFIG="/home/me/cfg.toml",
                      DSK_HOME="/home/me/.deepseek-kit", HTTPS_PROXY="http://proxy.example:3128",
                      no_proxy="example.com")
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_no_deepseek_dsk_or_proxy_variable_reaches_a_test() -> None:
    leaked = [k for k in os.environ if k.startswith(("DEEPSEEK_", "DSK_")) and k != "DSK_HOME"]
    assert leaked == []
    assert [k for k in PROXY_VARS if k in os.environ] == []


def test_dsk_home_is_a_fresh_private_folder(tmp_path: Path) -> None:
    home = Path(os.environ["DSK_HOME"])
    assert home != Path("/home/me/.deepseek-kit") and home.is_dir() and list(home.iterdir()) == []
    assert home != tmp_path and home.parent != tmp_path  # tests that list tmp_path see only their files


_LIMIT_AT_IMPORT = sys.getrecursionlimit()


def test_a_test_may_raise_the_recursion_limit():
    sys.setrecursionlimit(_LIMIT_AT_IMPORT + 20_000)  # what mypy.api.run does in-process


def test_the_next_test_gets_the_limit_back():
    # Runs after the test above (file order): the nesting guards of the hostile-server tests depend
    # on this limit, so a raised one must not leak into them.
    assert sys.getrecursionlimit() == _LIMIT_AT_IMPORT
