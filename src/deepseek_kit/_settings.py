"""Where settings come from: explicit arguments, then the environment, then the config file.

Environment: DEEPSEEK_API_KEY, DEEPSEEK_BASE_URL, DSK_HOME (state directory, default
~/.deepseek-kit), DSK_CONFIG (config file, default $DSK_HOME/config.toml), DSK_PROFILE.

Config file (TOML): top-level keys are the defaults, `[profiles.NAME]` tables override them:

    api_key = "sk-..."            # or api_key_env = "MY_KEY_VAR"
    base_url = "https://api.deepseek.com"
    model = "deepseek-flash"
    [profiles.local]
    base_url = "http://127.0.0.1:8000"

The known keys are type-checked when the file is read (`_ConfigShape`): a value of the wrong type
(`api_key = 5`, `endpoints = "x"`, `[profiles] a = 5`) is a `UsageError` naming the key, never a
TypeError later nor a header `Bearer 5`. Unknown keys are left to the code that reads them.
Base URLs and keys, whatever their source, are checked by `resolve` (a URL that does not parse or
names no host, a port out of range, a key with a line break or a control character).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ._wire.errors import UsageError

__all__ = ["DEFAULT_BASE_URL", "check_header", "check_url", "config_path", "config_table", "home_dir",
           "load_config", "resolve"]

T = TypeVar("T")

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
#: the connection (request smuggling through a gateway; docs/attack-round-2026-12.md, round 2).
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
    """The state directory (config, request log, caches): DSK_HOME, else ~/.deepseek-kit."""
    return Path(os.environ.get("DSK_HOME") or Path.home() / ".deepseek-kit")


def config_path() -> Path:
    """The config file: DSK_CONFIG, else $DSK_HOME/config.toml (it may not exist)."""
    env = os.environ.get("DSK_CONFIG")
    return Path(env) if env else home_dir() / "config.toml"


class _ConfigShape(msgspec.Struct):
    """The types of the keys this package reads from the config file (top level or a profile)."""

    api_key: str | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    beta_base_url: str | None = None
    model: str | None = None
    endpoints: list[dict[str, Any]] | None = None
    routing: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None
    cache: dict[str, Any] | None = None
    metrics: bool | dict[str, Any] | None = None
    logs: bool | dict[str, Any] | None = None
    prefix_completion: bool | None = None
    pricing: dict[str, Any] | None = None
    proxy: str | None = None
    trust_env: bool | None = None
    max_response_bytes: int | None = None
    max_event_bytes: int | None = None


def _check_shape(data: Any, where: str) -> None:
    try:
        msgspec.convert(data, _ConfigShape)
    except msgspec.ValidationError as exc:
        # "Expected `str`, got `int` - at `$.api_key`" -> name the key as the file spells it.
        msg, _, at = str(exc).partition(" - at `$.")
        key = at.rstrip("`")
        raise UsageError(f"{where}{' ' + key if key else ''}: {msg.replace('`', '')}") from None


def config_table(key: str, factory: Callable[..., T], value: Any) -> T:
    """`factory(**value)` for a config-file table (`[limits]`, `[cache]`, ...), its unknown or
    misspelt keys a UsageError naming the table rather than a TypeError. `key` is the table's
    name, used in that message; `value` the table as read from the file."""
    if not isinstance(value, dict):
        raise UsageError(f"config file: {key} must be a [{key}] table, got {value!r}")
    try:
        return factory(**value)
    except TypeError as exc:
        raise UsageError(f"config file [{key}]: {exc}") from None


def _check_key(key: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        # Sent as a header line: a line break would inject headers (and aiohttp refuses it).
        raise UsageError("the API key contains a line break or a control character: check "
                         "DEEPSEEK_API_KEY or api_key in the config file")
    return key


def load_config(path: Path | None = None, profile: str | None = None) -> dict[str, Any]:
    """The merged settings of the config file for `profile` ({} when there is no file): the
    top-level keys, overridden by the `[profiles.NAME]` table. `path` defaults to `config_path()`;
    a `path` given that does not exist, a malformed file or an unknown profile is a `UsageError`."""
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
    if not isinstance(profiles, dict):
        raise UsageError(f"config file {p}: profiles must be [profiles.NAME] tables, got {profiles!r}")
    _check_shape(data, f"config file {p}:")
    name = profile or os.environ.get("DSK_PROFILE")
    if name:
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise UsageError(f"profile {name!r} not found in {p} (profiles: {known})")
        chosen = profiles[name]
        if not isinstance(chosen, dict):
            raise UsageError(f"config file {p}: profile {name!r} must be a [profiles.{name}] table, "
                             f"got {chosen!r}")
        _check_shape(chosen, f"config file {p}: [profiles.{name}]")
        data.update(chosen)
    return data


def resolve(
    api_key: str | None, base_url: str | None, *, profile: str | None = None,
    config_file: str | Path | None = None,
) -> tuple[str | None, str, dict[str, Any]]:
    """(api_key, base_url, other config values) by the precedence above: `api_key` and
    `base_url` win when given, then the environment, then the config file (`config_file`, default
    `config_path()`) with its `profile` table applied (default: DSK_PROFILE)."""
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
        _check_key(key)
        key = key or None  # type: ignore[unreachable]  # "" means unset
    return key, url, cfg
