"""The gateway's TOML config: load, validate, and say exactly what is wrong and where.

Tables: `[gateway]` (listen address, state URL, env var names, request caps, CORS), `[[upstream]]`
(one per server: name, base_url, api_key_env, kind, priority, weight, models mapping), `[models]`
(aliases, the served list), and the library's own settings types in their own tables: `[timeout]`
(`Timeout`), `[routing]` (`Routing`), `[limits]` (`Limits`), `[cache]` (`CachePolicy`), `[logs]`
(`LogConfig`). Unknown keys and wrong types are errors naming the key and its line (tomllib keeps
no positions, so the line is found in the text). Upstream URLs come only from here: a request can
never name one (no SSRF by construction). Reference: docs/gateway.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek_kit._logs.store import LogConfig
from deepseek_kit._settings import check_url
from deepseek_kit._steps.cache.step import CachePolicy
from deepseek_kit._steps.limits.step import Limits
from deepseek_kit._steps.router import Routing
from deepseek_kit._transport.timeouts import Timeout
from deepseek_kit._wire.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["KINDS", "GatewayConfig", "GatewayConfigError", "Upstream", "load_gateway_config",
           "parse_gateway_config"]

#: Upstream kinds and the library dialect each stands for (docs/dialects.md).
KINDS = ("deepseek", "vllm", "sglang", "ollama", "llamacpp", "openai")
#: Retired DeepSeek names callers still send: served by the current model, with the thinking mode
#: the old name meant (https://api-docs.deepseek.com/news/news260424).
DEFAULT_ALIASES: dict[str, str] = {"deepseek-chat": "deepseek-flash", "deepseek-reasoner": "deepseek-flash"}
DEFAULT_MODELS = ("deepseek-flash", "deepseek-v4-pro")
MAX_CONFIG_BYTES = 1 << 20


class GatewayConfigError(UsageError):
    """The config file is wrong; the message names the key and its line."""


@dataclass(frozen=True)
class Upstream:
    """One `[[upstream]]` table. `api_key` is read from the `api_key_env` variable at load time and
    never shown by `repr()`."""

    name: str
    base_url: str
    api_key_env: str | None = None
    kind: str = "deepseek"
    priority: int = 0
    weight: float = 1.0
    models: Mapping[str, str] = field(default_factory=dict)
    prefix_completion: bool | None = None
    hedge_after: float | None = None
    rpm: float | None = None  # this upstream account's caps (limits.py), shared across workers
    tpm: float | None = None
    max_in_flight: int | None = None
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GatewayConfig:
    """The whole gateway config (`load_gateway_config(path)` or `parse_gateway_config(text)`),
    read from a TOML file whose tables docs/gateway.md describes key by key.

    Attributes:
        upstreams: The `[[upstream]]` servers (at least one), each an `Upstream`.
        host: Address to listen on (`listen = "HOST:PORT"`; `dsk serve --host` overrides it).
        port: Port to listen on (`dsk serve --port` overrides it).
        state: Where virtual keys and budgets live: `sqlite:///abs/path.db`,
            `sqlite:///:memory:`, or Redis (`redis://host:port/db`, `rediss://`, `unix://`),
            shared by several workers (needed with `auth = "keys"`).
        auth: "keys" (virtual keys from `state`) or "none" (open, nothing charged: local use only).
        admin_key_env: Env var holding the admin API key; None (the default) turns that API off.
        pepper_env: Env var holding the key-hash pepper (`dsk keys` reads the same).
        max_body_bytes: Request body cap in bytes, counted after gzip/deflate inflation (413 above).
        cors_origins: Origins allowed by CORS; empty: no CORS headers at all (`("*",)` for any).
        access_log: True writes one JSON line per request on stderr (`AccessLogHandler`).
        repair_entries: Tool-call ids whose reasoning the gateway remembers, to put back into
            a later request that dropped it (thinking mode with tools).
        currency: Currency of budgets and costs: "CNY" or "USD".
        shutdown_grace: Seconds calls in flight may take to finish after SIGTERM (and after a
            reload).
        client_timeout: Seconds a caller may take to send its request body (408 after).
        ws_heartbeat: WebSocket: seconds between pings.
        ws_idle: WebSocket: seconds a new connection may wait before its first request.
        ws_linger: WebSocket: seconds to wait after an answer for the next request before
            closing with 1000.
        rpm: Requests per minute of the whole gateway (every key together), or None.
        tpm: Tokens per minute of the whole gateway, or None.
        max_in_flight: Calls in flight through the whole gateway at once, or None.
        balance_poll: Seconds between balance polls of each `kind = "deepseek"` upstream (0: off).
        balance_recheck: Seconds between polls of an upstream out of balance (after a 402).
        aliases: Model name a caller may send -> the model served (`[models] aliases`).
        models: The model names served (`[models] served`).
        timeout: The upstream calls' `Timeout` (`[timeout]`; first token and idle 60 s here).
        routing: How a call picks an upstream (`[routing]`, a `Routing`).
        limits: Upstream-side rate limits (`[limits]`, a `Limits`), or None.
        cache: The answer cache (`[cache]`, a `CachePolicy`), or None for none.
        logs: The request log (`[logs]`, a `LogConfig`), or None for none.
        path: The file this config was read from (None when parsed from text); SIGHUP re-reads it."""

    upstreams: tuple[Upstream, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    state: str | None = None
    auth: str = "keys"  # "keys" (virtual keys, needs `state`) or "none" (open: local use only)
    admin_key_env: str | None = None
    pepper_env: str = "DSK_GATEWAY_PEPPER"
    max_body_bytes: int = 8 << 20
    cors_origins: tuple[str, ...] = ()
    access_log: bool = True
    repair_entries: int = 10_000
    currency: str = "CNY"
    shutdown_grace: float = 30.0
    client_timeout: float = 30.0  # seconds a caller may take to send its request body
    # WebSocket streaming (websocket.py): ping interval, wait for a connection's first request,
    # wait after an answer for the next request before closing with 1000
    ws_heartbeat: float = 20.0
    ws_idle: float = 30.0
    ws_linger: float = 0.25
    rpm: float | None = None  # the whole gateway's caps (limits.py), shared across workers
    tpm: float | None = None
    max_in_flight: int | None = None
    balance_poll: float = 60.0  # seconds between balance polls of a DeepSeek upstream (0: off)
    balance_recheck: float = 10.0  # seconds between polls of an upstream out of balance (402)
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    models: tuple[str, ...] = DEFAULT_MODELS
    timeout: Timeout = field(default_factory=lambda: Timeout(first_token=60.0, idle=60.0, total=900.0))
    routing: Routing = field(default_factory=Routing)
    limits: Limits | None = None
    cache: CachePolicy | None = None
    logs: LogConfig | None = None
    path: str | None = None

    def served_models(self) -> tuple[str, ...]:
        """Every model name a caller may send: the served list, the aliases, the upstreams' names."""
        names = dict.fromkeys(self.models)
        names.update(dict.fromkeys(self.aliases))
        for u in self.upstreams:
            names.update(dict.fromkeys(u.models))
        return tuple(names)


# -- schema ------------------------------------------------------------------------------------------

_STR, _INT, _NUM, _BOOL = (str,), (int,), (int, float), (bool,)
_GATEWAY: dict[str, tuple[type, ...]] = {
    "listen": _STR, "state": _STR, "auth": _STR, "admin_key_env": _STR, "pepper_env": _STR,
    "max_body_bytes": _INT, "cors_origins": (list,), "access_log": _BOOL,
    "repair_entries": _INT, "currency": _STR, "shutdown_grace": _NUM, "client_timeout": _NUM,
    "rpm": _NUM, "tpm": _NUM, "max_in_flight": _INT, "balance_poll": _NUM, "balance_recheck": _NUM,
    "ws_heartbeat": _NUM, "ws_idle": _NUM, "ws_linger": _NUM,
}
_UPSTREAM: dict[str, tuple[type, ...]] = {
    "name": _STR, "base_url": _STR, "api_key_env": _STR, "kind": _STR, "priority": _INT,
    "weight": _NUM, "models": (dict,), "prefix_completion": _BOOL, "hedge_after": _NUM,
    "rpm": _NUM, "tpm": _NUM, "max_in_flight": _INT,
}
_MODELS: dict[str, tuple[type, ...]] = {"aliases": (dict,), "served": (list,)}
_LIBRARY: dict[str, type] = {"timeout": Timeout, "routing": Routing, "limits": Limits,
                             "cache": CachePolicy, "logs": LogConfig}
_TOP = {"gateway", "upstream", "models", *_LIBRARY}


def _typename(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "an array", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types if not (t is int and float in types))


def _ok(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


class _Lines:
    """Finds where a key sits in the TOML text: the section header, then `key =` inside it."""

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]\s]+)\s*\]\]?")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, table: str, index: int | None = None, key: str | None = None) -> int | None:
        start: int | None = None
        seen = -1
        for i, line in enumerate(self.lines):
            m = self._header.match(line)
            if m:
                if start is not None:
                    break  # the section ended without the key
                name = m.group(2).strip('"')
                if name == table or (key is None and name.startswith(table + ".")):
                    seen += 1
                    if index is None or seen == index:
                        start = i
                        if key is None:
                            return i + 1
                continue
            if start is not None and key is not None and re.match(
                    rf'^\s*"?{re.escape(key)}"?\s*=', line):
                return i + 1
        if start is not None:
            return start + 1
        if key is not None:  # dotted or inline forms: first mention of the key
            for i, line in enumerate(self.lines):
                if re.search(rf'(^|[\s{{,.]){re.escape(key)}"?\s*=', line):
                    return i + 1
        return None


class _Checker:
    def __init__(self, text: str, path: str | None) -> None:
        self.lines = _Lines(text)
        self.where = path or "gateway config"

    def fail(self, what: str, why: str, table: str, index: int | None = None,
             key: str | None = None) -> GatewayConfigError:
        line = self.lines.find(table, index, key)
        at = f"{self.where}, line {line}" if line else self.where
        return GatewayConfigError(f"{at}: {what}: {why}")

    def table(self, raw: Any, name: str, schema: Mapping[str, tuple[type, ...]],
              index: int | None = None) -> dict[str, Any]:
        label = f"[[{name}]] #{index + 1}" if index is not None else f"[{name}]"
        if not isinstance(raw, dict):
            raise self.fail(label, "must be a table", name, index)
        for key, value in raw.items():
            if key not in schema:
                raise self.fail(f"{label} {key}", f"unknown key (known: {', '.join(sorted(schema))})",
                                name, index, key)
            if not _ok(value, schema[key]):
                raise self.fail(f"{label} {key}", f"must be {_typename(schema[key])}, got {value!r}",
                                name, index, key)
        return raw

    def library(self, raw: Any, name: str) -> Any:
        factory = _LIBRARY[name]
        if not isinstance(raw, dict):
            raise self.fail(f"[{name}]", "must be a table", name)
        known = {f.name for f in dataclasses.fields(factory) if f.name not in ("clock", "holidays")}
        for key in raw:
            if key not in known:
                raise self.fail(f"[{name}] {key}", f"unknown key (known: {', '.join(sorted(known))})",
                                name, None, key)
        try:
            return factory(**raw)
        except (UsageError, TypeError, ValueError) as exc:
            bad = next((k for k in raw if k in str(exc)), None)
            raise self.fail(f"[{name}]" + (f" {bad}" if bad else ""), str(exc), name, None, bad) from None


def _caps(d: dict[str, Any], label: str, check: _Checker, table: str, index: int | None) -> dict[str, Any]:
    """rpm / tpm (positive numbers) and max_in_flight (an integer >= 1) of a table, checked."""
    out: dict[str, Any] = {}
    for name in ("rpm", "tpm", "max_in_flight"):
        if name in d:
            v = d[name]
            if not 0 < v < float("inf") or (name == "max_in_flight" and v < 1):
                raise check.fail(f"{label} {name}", f"must be a positive number, got {v!r}", table, index,
                                 name)
            out[name] = v
    return out


def _listen(value: str, check: _Checker) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise check.fail("[gateway] listen", f"must be \"HOST:PORT\", got {value!r}", "gateway", None,
                         "listen")
    return host, int(port)


def _str_map(raw: dict[str, Any], what: str, check: _Checker, table: str, index: int | None,
             key: str) -> dict[str, str]:
    for k, v in raw.items():
        if not isinstance(v, str) or not v:
            raise check.fail(f"{what} {k!r}", f"must map to a model name string, got {v!r}", table,
                             index, key)
    return dict(raw)


def _upstream(raw: Any, i: int, check: _Checker, env: Mapping[str, str]) -> Upstream:
    d = check.table(raw, "upstream", _UPSTREAM, i)
    label = f"[[upstream]] #{i + 1}"
    for req in ("name", "base_url"):
        if not d.get(req):
            raise check.fail(f"{label} {req}", "is required", "upstream", i)
    try:
        url = check_url(d["base_url"], "base_url")
    except UsageError as exc:
        raise check.fail(f"{label} base_url", str(exc), "upstream", i, "base_url") from None
    kind = d.get("kind", "deepseek")
    if kind not in KINDS:
        raise check.fail(f"{label} kind", f"must be one of {', '.join(KINDS)}, got {kind!r}",
                         "upstream", i, "kind")
    weight = d.get("weight", 1.0)
    if not 0 <= weight < float("inf"):
        raise check.fail(f"{label} weight", f"must be a finite number >= 0, got {weight!r}", "upstream",
                         i, "weight")
    key_env = d.get("api_key_env")
    api_key = env.get(key_env) or None if key_env else None
    return Upstream(
        name=d["name"], base_url=url, api_key_env=key_env, kind=kind, priority=d.get("priority", 0),
        weight=float(weight), models=_str_map(d.get("models", {}), f"{label} models", check, "upstream",
                                              i, "models"),
        prefix_completion=d.get("prefix_completion"), hedge_after=d.get("hedge_after"), api_key=api_key,
        **_caps(d, label, check, "upstream", i))


def parse_gateway_config(text: str, *, path: str | None = None,
                         env: Mapping[str, str] | None = None) -> GatewayConfig:
    """A validated `GatewayConfig` from TOML `text`. `path` names the file in error messages
    (and is kept as `GatewayConfig.path`); `env` is where `*_env` names (upstream keys) are
    read, default `os.environ`.

    Raises `GatewayConfigError`, naming the file, line and key, for anything invalid.

        config = parse_gateway_config(text, env={"DEEPSEEK_API_KEY": "sk-..."})"""
    env = os.environ if env is None else env
    check = _Checker(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GatewayConfigError(f"{check.where}: not valid TOML: {exc}") from None
    for key in data:
        if key not in _TOP:
            raise check.fail(f"[{key}]", f"unknown table (known: {', '.join(sorted(_TOP))})", key)
    gw = check.table(data.get("gateway", {}), "gateway", _GATEWAY)
    out: dict[str, Any] = {"path": path}
    if "listen" in gw:
        out["host"], out["port"] = _listen(gw["listen"], check)
    for name in ("state", "admin_key_env", "pepper_env", "max_body_bytes", "access_log",
                 "repair_entries", "shutdown_grace", "client_timeout",
                 "ws_heartbeat", "ws_idle", "ws_linger"):
        if name in gw:
            out[name] = gw[name]
    for name in ("shutdown_grace", "client_timeout", "ws_heartbeat", "ws_idle", "ws_linger"):
        if name in gw and not 0 < gw[name] < float("inf"):
            raise check.fail(f"[gateway] {name}", f"must be a positive number of seconds, got {gw[name]!r}",
                             "gateway", None, name)
    out.update(_caps(gw, "[gateway]", check, "gateway", None))
    for name in ("balance_poll", "balance_recheck"):
        if name in gw:
            if not 0 <= gw[name] < float("inf"):
                raise check.fail(f"[gateway] {name}", f"must be a number of seconds >= 0, got {gw[name]!r}",
                                 "gateway", None, name)
            out[name] = float(gw[name])
    for name in ("max_body_bytes", "repair_entries"):
        if name in gw and gw[name] < 1:
            raise check.fail(f"[gateway] {name}", f"must be >= 1, got {gw[name]!r}", "gateway", None, name)
    auth = gw.get("auth", "keys")
    if auth not in ("keys", "none"):
        raise check.fail("[gateway] auth", f'must be "keys" or "none", got {auth!r}', "gateway", None, "auth")
    out["auth"] = auth
    if auth == "keys" and not gw.get("state"):
        raise check.fail("[gateway] state", 'is required for virtual keys (e.g. "sqlite:///var/lib/dsk/'
                         'gateway.db"); set auth = "none" only for a gateway nobody else can reach',
                         "gateway")
    state = gw.get("state")
    if state is not None and not state.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
        raise check.fail("[gateway] state", f'must start with "sqlite:///" or "redis://", got {state!r}',
                         "gateway", None, "state")
    currency = gw.get("currency", "CNY")
    if currency not in ("CNY", "USD"):
        raise check.fail("[gateway] currency", f'must be "CNY" or "USD", got {currency!r}', "gateway",
                         None, "currency")
    out["currency"] = currency
    origins = gw.get("cors_origins", [])
    if not all(isinstance(o, str) and o for o in origins):
        raise check.fail("[gateway] cors_origins", "must be an array of origin strings", "gateway", None,
                         "cors_origins")
    out["cors_origins"] = tuple(origins)
    ups = data.get("upstream")
    if not isinstance(ups, list) or not ups:
        raise check.fail("[[upstream]]", "at least one [[upstream]] table is required", "upstream")
    upstreams = tuple(_upstream(u, i, check, env) for i, u in enumerate(ups))
    names = [u.name for u in upstreams]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise check.fail(f"[[upstream]] #{i + 1} name", f"{n!r} is used twice", "upstream", i, "name")
    out["upstreams"] = upstreams
    if "models" in data:
        m = check.table(data["models"], "models", _MODELS)
        if "aliases" in m:
            out["aliases"] = _str_map(m["aliases"], "[models] aliases", check, "models", None, "aliases")
        if "served" in m:
            if not all(isinstance(x, str) and x for x in m["served"]):
                raise check.fail("[models] served", "must be an array of model names", "models", None,
                                 "served")
            out["models"] = tuple(m["served"])
    for name in _LIBRARY:
        if name in data:
            out[name] = check.library(data[name], name)
    return GatewayConfig(**out)


def load_gateway_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate the gateway config file at `path` (see the module docstring); `env` is
    where `*_env` names (upstream keys) are read, default `os.environ`.

    Raises `GatewayConfigError` for a missing, unreadable or invalid file, saying what to fix.

        config = load_gateway_config("gateway.toml")"""
    p = Path(path)
    try:
        if not p.is_file():
            raise GatewayConfigError(f"{p}: not a regular file (give the gateway's TOML config)")
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise GatewayConfigError(f"{p}: larger than {MAX_CONFIG_BYTES:,} bytes: not a gateway config")
        text = p.read_text("utf-8")
    except OSError as exc:
        raise GatewayConfigError(f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise GatewayConfigError(f"{p}: not UTF-8 text") from None
    return parse_gateway_config(text, path=str(p), env=env)
