"""State files under DSK_HOME are private (docs/attack-round-2026-12.md, S4): DSK_HOME is created 0700, the
cache and logs databases (and their -wal/-shm files) are 0600, and ones left readable by older versions are
tightened when they are opened."""

from __future__ import annotations

import os
import stat

from deepseek_kit import AsyncClient, CachePolicy, LogConfig

MSGS = [{"role": "user", "content": "private"}]


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


async def _one_call(url: str) -> None:
    async with AsyncClient(api_key="sk-private-files-test", base_url=url, max_retries=0,
                           cache=CachePolicy(backend="sqlite"), logs=LogConfig()) as c:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS, temperature=0, thinking=False)
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS, temperature=0, thinking=False)


async def test_fresh_home_and_databases_are_private(emulator_url, tmp_path, monkeypatch):
    home = tmp_path / "fresh" / "dsk-home"
    monkeypatch.setenv("DSK_HOME", str(home))
    old = os.umask(0o022)
    try:
        await _one_call(emulator_url)
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    files = [p for p in home.iterdir() if p.name.startswith(("cache.sqlite3", "logs.sqlite3"))]
    assert {p.name for p in files} >= {"cache.sqlite3", "logs.sqlite3"}
    for p in files:
        assert mode(p) & 0o077 == 0, (p.name, oct(mode(p)))


async def test_files_left_readable_are_tightened(emulator_url, tmp_path, monkeypatch):
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
        (home / name).write_bytes(b"")
        os.chmod(home / name, 0o644)
    monkeypatch.setenv("DSK_HOME", str(home))
    await _one_call(emulator_url)
    assert mode(home) == 0o700
    for p in home.iterdir():
        if p.name.startswith("cache.sqlite3"):
            assert mode(p) & 0o077 == 0, (p.name, oct(mode(p)))


async def test_a_custom_log_directory_is_not_touched(emulator_url, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    async with AsyncClient(api_key="sk-private-files-test", base_url=emulator_url, max_retries=0,
                           logs=LogConfig(path=shared / "logs.sqlite3")) as c:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert mode(shared) == 0o755  # not ours to tighten
    assert mode(shared / "logs.sqlite3") == 0o600
