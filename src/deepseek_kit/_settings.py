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

__all__ = ["DEFAULT_BASE_URL", "check_header", "check_url", "config_path", "home_dir", "load_config",
           "resolve"]

DEFAULT_BASE_URL = "https://api.deepseek.com"


def check_url(url: object, what: str = "base_url") -> str:
    """`url` as a clean http(s) base URL (no trailing slash), or a UsageError naming `what`: a
    scheme other than http(s), no host, a port out of range, brackets that do not close, or
    credentials in the URL (the API key goes in the Authorization header; aiohttp would refuse
    to combine the two on every call)."""
    from urllib.parse import urlsplit

    if type(url) is not str:
        raise UsageError(f"{what} must be a URL string, got {type(url).__name__}")
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{what} must start with http:// or https://, got {_shown(url)!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port out of range or not a number)
    except ValueError as exc:
        raise UsageError(f"{what} is not a valid URL ({exc}): {_shown(url)!r}") from None
    if not parts.hostname:
        raise UsageError(f"{what} has no host: {url!r}")
    if "@" in parts.netloc:
        raise UsageError(f"{what} must not carry credentials ({_shown(url)!r}): pass the key as api_key")
    if any(c in url for c in "\r\n\t\0 "):
        raise UsageError(f"{what} must not contain spaces or control characters: {_shown(url)!r}")
    return url


def _shown(url: str) -> str:
    """The URL with any user:password@ masked."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "****@" + netloc.rpartition("@")[2]
    return scheme + sep + netloc + slash + path


#: Headers that frame the message or the connection: the HTTP client owns them. A caller's
#: `Content-Length: 5` or `Transfer-Encoding: chunked` next to the real length would desynchronise
#: the connection (request smuggling through a gateway; issue 8, second round).
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                      "trailer", "proxy-connection"})


def check_header(name: object, value: object, what: str = "header") -> None:
    """A UsageError unless `name: value` can go on the wire as it is: strings, no CR/LF/NUL (header
    injection), a token for the name, not a framing header (Content-Length, Transfer-Encoding,
    Connection...)."""
    if type(name) is not str or not name or any(c in name for c in " \t\r\n\0:"):
        raise UsageError(f"{what} name {name!r} is not a valid HTTP header name")
    if name.lower() in _FRAMING:
        raise UsageError(f"{what} may not set {name}: the HTTP client sets the framing headers itself")
    if type(value) is not str:
        raise UsageError(f"{what} {name!r} must be a string, got {type(value).__name__}")
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"{what} {name!r} contains a line break or NUL (header injection is refused)")


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
    url = check_url(base_url or os.environ.get("DEEPSEEK_BASE_URL") or cfg.get("base_url")
                    or DEFAULT_BASE_URL)
    if key is not None:
        if type(key) is not str:
            raise UsageError(f"api_key must be a string, got {type(key).__name__}")
        if any(c in key for c in "\r\n\0"):
            raise UsageError("api_key contains a line break or NUL (check the config file or the "
                             "environment variable it came from)")
        key = key or None
    return key, url, cfg
