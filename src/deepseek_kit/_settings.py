"""Where settings come from: explicit arguments, then the environment, then the config file.

Environment: DEEPSEEK_API_KEY, DEEPSEEK_BASE_URL, DSK_HOME (state directory, default
~/.deepseek-kit), DSK_CONFIG (config file, default $DSK_HOME/config.toml), DSK_PROFILE.

Config file (TOML): top-level keys are the defaults, `[profiles.NAME]` tables override them:

    api_key = "sk-..."            # or api_key_env = "MY_KEY_VAR"
    base_url = "https://api.deepseek.com"
    model = "deepseek-flash"
    [profiles.local]
    base_url = "http://127.0.0.1:8000"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ._errors import UsageError

__all__ = ["DEFAULT_BASE_URL", "config_path", "home_dir", "load_config", "resolve"]

DEFAULT_BASE_URL = "https://api.deepseek.com"


def home_dir() -> Path:
    return Path(os.environ.get("DSK_HOME") or Path.home() / ".deepseek-kit")


def config_path() -> Path:
    env = os.environ.get("DSK_CONFIG")
    return Path(env) if env else home_dir() / "config.toml"


def load_config(path: Path | None = None, profile: str | None = None) -> dict[str, Any]:
    """The merged settings of the config file for `profile` ({} when there is no file)."""
    p = path or config_path()
    if not p.is_file():
        if path is not None:
            raise UsageError(f"config file {p} does not exist")
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with p.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read config file {p}: {exc}") from None
    profiles = data.pop("profiles", {}) or {}
    name = profile or os.environ.get("DSK_PROFILE")
    if name:
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise UsageError(f"profile {name!r} not found in {p} (profiles: {known})")
        data.update(profiles[name])
    return data


def resolve(
    api_key: str | None, base_url: str | None, *, profile: str | None = None,
    config_file: str | Path | None = None,
) -> tuple[str | None, str, dict[str, Any]]:
    """(api_key, base_url, other config values) by the precedence above."""
    cfg: dict[str, Any] = {}
    if api_key is None or base_url is None or profile or config_file:
        cfg = load_config(Path(config_file) if config_file else None, profile)
    key = api_key or os.environ.get("DEEPSEEK_API_KEY") or None
    if key is None:
        key = cfg.get("api_key")
        if key is None and cfg.get("api_key_env"):
            key = os.environ.get(str(cfg["api_key_env"]))
    url = base_url or os.environ.get("DEEPSEEK_BASE_URL") or cfg.get("base_url") or DEFAULT_BASE_URL
    url = str(url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"base_url must start with http:// or https://, got {url!r}")
    return key, url, cfg
