"""`AsyncClient`: settings, the steps they turn into, and the OpenAI-shaped resources.

The constructor resolves arguments, environment and config file into step objects; their order is
built in `pipeline.build_pipeline` (the one place that states it).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from types import TracebackType
from typing import Any

from deepseek_kit._logs.store import LogConfig
from deepseek_kit._settings import DEFAULT_BASE_URL, check_header, check_url, config_table, resolve
from deepseek_kit._steps.auth import AuthProvider, AuthStep, KeyRotation, StaticKey, provider_secrets
from deepseek_kit._steps.base import CallNext, Step
from deepseek_kit._steps.cache.step import CachePolicy, CacheStep
from deepseek_kit._steps.limits.step import Limits, LimitStep
from deepseek_kit._steps.logs import LogStep
from deepseek_kit._steps.metrics.step import MetricsConfig, MetricsStep
from deepseek_kit._steps.metrics.summary import Metrics
from deepseek_kit._steps.retry import RetryPolicy, RetryStep
from deepseek_kit._steps.router import Endpoint, EndpointHealth, RouterStep, Routing, endpoints_from_config
from deepseek_kit._transport.attempt import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_RESPONSE_BYTES, Attempt
from deepseek_kit._transport.request import Request, Response
from deepseek_kit._transport.timeouts import DEFAULT_TIMEOUT, Timeout
from deepseek_kit._transport.transports import AiohttpTransport, Transport
from deepseek_kit._version import __version__
from deepseek_kit._wire.errors import UsageError, redact
from deepseek_kit._wire.holidays import HolidayCalendar
from deepseek_kit._wire.pricing import calendar_of, default_clock
from deepseek_kit._wire.urls import beta_url

from .pipeline import build_pipeline
from .resume import Resumption

__all__ = ["AsyncClient", "Step"]

def _metrics_step(value: MetricsConfig | MetricsStep | bool | None) -> MetricsStep | None:
    if value is None or value is False:
        return None
    if isinstance(value, MetricsStep):
        return value
    return MetricsStep(value if isinstance(value, MetricsConfig) else MetricsConfig())


def _cache_step(value: CachePolicy | CacheStep | bool | None) -> CacheStep | None:
    if value is None or value is False:
        return None
    if isinstance(value, CacheStep):
        return value
    return CacheStep(value if isinstance(value, CachePolicy) else CachePolicy())


def _size_setting(name: str, value: int | None, cfg: Mapping[str, Any], default: int) -> int:
    """A byte limit from the argument, else the config file, else the default; a positive int."""
    if value is None:
        value = cfg.get(name, default)
    if type(value) is not int or value <= 0:
        raise UsageError(f"{name} must be a positive number of bytes, got {value!r}")
    return value


class AsyncClient:
    """Async DeepSeek client.

    `AsyncClient()` reads DEEPSEEK_API_KEY / DEEPSEEK_BASE_URL, then the config file. Pass
    `timeout=Timeout(...)` (or seconds), `max_retries=` or a full `retry=RetryPolicy(...)`,
    `endpoints=[Endpoint(...), ...]` with `routing=Routing(...)` for failover across DeepSeek and
    private deployments, `auth=` for KeyRotation / OAuth2ClientCredentials,
    `max_response_bytes=` (default 64 MiB) caps a non-stream body and `max_event_bytes=` (16 MiB)
    one stream event, against servers that send without end (config keys of the same names);
    Proxies: `proxy="http://host:port"` (config key `proxy`), else HTTP_PROXY / HTTPS_PROXY /
    NO_PROXY unless `trust_env=False` (config key `trust_env = false`), see docs/proxies.md.
    `transport=` to replace the network (MockTransport in unit tests), `steps=` to add pipeline
    steps seen once per call, `inner_steps=` steps seen once per attempt (where each sits:
    `_client/pipeline.py`).
    `holidays=` (a `HolidayCalendar`) prices peak hours for the metrics and logs configs
    the client builds itself and for batch runs; default: the config file's `[pricing]` table
    (docs/pricing.md).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: Timeout | float | None = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        default_headers: Mapping[str, str] | None = None,
        beta_base_url: str | None = None,
        max_connections: int = 1000,
        trust_env: bool | None = None,
        proxy: str | None = None,
        profile: str | None = None,
        config_file: str | None = None,
        steps: list[Step] | None = None,
        inner_steps: list[Step] | None = None,
        auth: AuthProvider | None = None,
        endpoints: Sequence[Endpoint] | None = None,
        routing: Routing | None = None,
        resumption: Resumption | None = None,
        prefix_completion: bool | None = None,
        limits: Limits | None = None,
        cache: CachePolicy | CacheStep | bool | None = None,
        metrics: MetricsConfig | MetricsStep | bool | None = None,
        logs: LogConfig | LogStep | bool | None = None,
        holidays: HolidayCalendar | Iterable[date] | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int | None = None,
    ) -> None:
        """Create the client.

        Every argument is optional; config-file keys of the same name fill what is left out.

        - api_key, base_url: else DEEPSEEK_API_KEY / DEEPSEEK_BASE_URL, else the config file
          (`deepseek_kit.config`), else no key and https://api.deepseek.com.
        - profile, config_file: which `[profiles.NAME]` table and which file to read.
        - timeout: a `Timeout`, or seconds for every phase; max_retries or retry=`RetryPolicy`.
        - default_headers: sent with every request (framing headers are refused).
        - beta_base_url: where prefix completion and FIM go (default: base_url + "/beta").
        - transport: a `Transport` in place of the network; max_connections, trust_env and proxy
          configure the default `AiohttpTransport` instead.
        - steps, inner_steps: your own `Step`s, seen once per call or once per attempt.
        - auth: an `AuthProvider` (`KeyRotation`, `OAuth2ClientCredentials`) in place of the key.
        - endpoints, routing: several `Endpoint`s and how a call picks one (`Routing`).
        - resumption, prefix_completion: how a broken stream is continued through prefix
          completion, and whether base_url supports it (None: only DeepSeek's own host).
        - limits: a `Limits` (rate, tokens, calls in flight); cache: True or a `CachePolicy`;
          metrics: True or a `MetricsConfig`; logs: True or a `LogConfig` (the request log).
        - holidays: the calendar that decides peak hours for costs.
        - max_response_bytes, max_event_bytes: caps on a body and on one stream event.

        Raises `UsageError` (saying what to set) when there is no key for DeepSeek's own API or a
        value is invalid."""
        key, url, cfg = resolve(api_key, base_url, profile=profile, config_file=config_file)
        if endpoints is None and cfg.get("endpoints"):
            endpoints = endpoints_from_config(cfg["endpoints"])
        if routing is None and cfg.get("routing"):
            routing = config_table("routing", Routing, cfg["routing"])
        if not key and auth is None and not endpoints and url == DEFAULT_BASE_URL:
            raise UsageError(
                "No DeepSeek API key: set DEEPSEEK_API_KEY, pass api_key=..., or put api_key in "
                "the config file (~/.deepseek-kit/config.toml)."
            )
        self._api_key = key
        self.base_url = url
        self.beta_base_url = check_url(beta_base_url or cfg.get("beta_base_url") or beta_url(url),
                                       "beta_base_url")
        self.timeout = Timeout.coerce(timeout)
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        self.retry = policy
        self.config = cfg
        # Broken streams are continued through prefix completion where the server supports it
        # (_client/resume.py): `prefix_completion` declares it for base_url (None: only DeepSeek's host).
        self.resumption = resumption if resumption is not None else Resumption()
        if prefix_completion is None:
            prefix_completion = cfg.get("prefix_completion")
        if prefix_completion not in (None, True, False):
            raise UsageError(f"prefix_completion must be true, false or unset, got {prefix_completion!r}")
        self.prefix_completion: bool | None = prefix_completion
        if trust_env is None:
            trust_env = cfg.get("trust_env", True)
        if type(trust_env) is not bool:
            raise UsageError(f"trust_env must be true or false, got {trust_env!r}")
        proxy = proxy if proxy is not None else cfg.get("proxy")
        if proxy is not None and (type(proxy) is not str or transport is not None):
            raise UsageError("proxy must be a URL string such as 'http://127.0.0.1:3128' (and is not "
                             "combined with transport=: give the proxy to that transport)")
        self._transport: Transport = transport or AiohttpTransport(
            max_connections=max_connections, trust_env=trust_env, proxy=proxy or None)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"deepseek-kit/{__version__}",
        }
        if default_headers:
            for name, value in default_headers.items():
                check_header(name, value, "default_headers")
            self._headers.update(default_headers)
        self._closed = False
        self.router = RouterStep(endpoints, routing) if endpoints else None
        self.auth: AuthProvider = auth or StaticKey(key)
        self._secret_parts: tuple[tuple[str, ...], tuple[object, ...]] | None = None  # see _secrets()
        # Config-file tables fill what the arguments left out: [limits], [cache], [metrics].
        if limits is None and cfg.get("limits"):
            limits = config_table("limits", Limits, cfg["limits"])
        if cache is None and cfg.get("cache"):
            cache = config_table("cache", CachePolicy, cfg["cache"])
        # [pricing]: the holiday calendar of every cost this client computes (docs/pricing.md).
        self.holidays = (calendar_of(holidays, "holidays") if holidays is not None
                         else HolidayCalendar.from_config(cfg.get("pricing")))
        if metrics is None and "metrics" in cfg:
            m = cfg["metrics"]
            metrics = (config_table("metrics", MetricsConfig, {"holidays": self.holidays, **m})
                       if isinstance(m, dict) else bool(m))
        if metrics is True:
            metrics = MetricsConfig(holidays=self.holidays)
        #: The wall clock costs are priced by (the metrics config's, else `default_clock()`).
        self.clock = (metrics.clock if isinstance(metrics, MetricsConfig) else metrics.config.clock
                      if isinstance(metrics, MetricsStep) else default_clock())
        self._metrics_step = _metrics_step(metrics)
        if self.router is not None:  # metrics that report endpoint health read the router
            for s in (*(steps or ()), self._metrics_step):
                watch = getattr(s, "watch_router", None)
                if callable(watch):
                    watch(self.router)
        self.cache = _cache_step(cache)
        self.limits = LimitStep(limits, api_key=key, routed=bool(endpoints)) if limits is not None else None
        # Logs: off in the library unless asked (argument or the config's `logs`), see docs/logs.md.
        if isinstance(logs, LogStep):
            self.logs: LogStep | None = logs
        else:
            log_cfg = LogConfig.resolve(logs, cfg, default=False)
            if log_cfg is not None and holidays is not None and not isinstance(logs, LogConfig):
                log_cfg = dataclasses.replace(log_cfg, holidays=self.holidays)
            # the source, read when a row is built: OAuth2 tokens fetched later are masked too
            self.logs = LogStep(log_cfg, secrets=self._secrets) if log_cfg is not None else None
        attempt = Attempt(
            self._transport, secrets=self._secrets,
            max_response_bytes=_size_setting("max_response_bytes", max_response_bytes, cfg,
                                             DEFAULT_MAX_RESPONSE_BYTES),
            max_event_bytes=_size_setting("max_event_bytes", max_event_bytes, cfg, DEFAULT_MAX_EVENT_BYTES))
        self._call: CallNext = build_pipeline(
            attempt, user_steps=steps or (), logs=self.logs, metrics=self._metrics_step, cache=self.cache,
            router=self.router, retry=RetryStep(policy), inner_steps=inner_steps or (), limits=self.limits,
            auth=AuthStep(self.auth))

        from .resources import Beta, Chat, Models, User

        self.chat = Chat(self)
        self.models = Models(self)
        self.user = User(self)
        self.beta = Beta(self)

    @property
    def metrics(self) -> Metrics:
        """The in-process summary: p50/p95/p99 latency and TTFT, QPS, errors by class, tokens,
        cost, cache hit rate (`print(client.metrics)` for a table, `.snapshot()` for a dict)."""
        if self._metrics_step is None:
            raise UsageError("metrics are off for this client: create it with metrics=True "
                             "(or MetricsConfig(...))")
        return self._metrics_step.metrics

    def endpoints(self) -> list[EndpointHealth]:
        """Each endpoint's health now (breaker state, calls in flight, consecutive failures, time
        to first token), in configuration order; empty without `endpoints=`."""
        return self.router.health() if self.router is not None else []

    @property
    def api_key(self) -> str | None:
        """The key this client sends (from the argument, DEEPSEEK_API_KEY or the config file), or None."""
        return self._api_key

    def _secrets(self) -> tuple[str | None, ...]:
        """Every secret this client holds now, to mask where a
        server echoes one (docs/attack-round-2026-12.md, S2): its
        key, its auth provider's keys and current tokens, and each endpoint's key and provider's.
        Fixed keys are collected once; only providers whose secrets change (OAuth2 tokens, custom
        providers) are asked again, so the common case costs one attribute read."""
        cached = self._secret_parts
        if cached is None:
            providers = [self.auth, *(lv.auth for lv in self.router.live)] if self.router else [self.auth]
            fixed = [self._api_key, *(lv.ep.api_key for lv in (self.router.live if self.router else ()))]
            changing: list[object] = []
            for p in providers:
                if isinstance(p, (StaticKey, KeyRotation)) or p is None:
                    fixed += provider_secrets(p)
                else:
                    changing.append(p)
            cached = self._secret_parts = (tuple(dict.fromkeys(s for s in fixed if s)), tuple(changing))
        fixed_t, changing_t = cached
        if not changing_t:
            return fixed_t
        return tuple(dict.fromkeys([*fixed_t, *(s for p in changing_t for s in provider_secrets(p))]))

    def __repr__(self) -> str:
        key = "****" + self._api_key[-4:] if self._api_key else None
        return f"AsyncClient(base_url={self.base_url!r}, api_key={key!r})"

    def _redact(self, text: str) -> str:
        return redact(text, *self._secrets())

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        stream: bool = False,
        beta: bool = False,
        timeout: Timeout | float | Any | None = ...,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> Response:
        """Send one API call through the pipeline (used by the resources; public for new
        endpoints the typed surface does not cover yet)."""
        if self._closed:
            raise UsageError("this client is closed; create a new AsyncClient")
        headers = dict(self._headers)
        if stream:
            headers["Accept"] = "text/event-stream"
        if extra_headers:
            for name, value in extra_headers.items():
                check_header(name, value, "extra_headers")
            headers.update(extra_headers)
        if max_retries is not None and (type(max_retries) is not int or max_retries < 0):
            raise UsageError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        t = self.timeout if timeout is ... else Timeout.coerce(timeout)
        url = (self.beta_base_url if beta else self.base_url) + path
        opts = dict(options) if options else {}
        if t.total is not None and "deadline" not in opts:
            # One deadline for the whole call, set here once: retries, failover across endpoints
            # and hedges all spend the same `total` (steps read `options["deadline"]`).
            opts["deadline"] = asyncio.get_running_loop().time() + t.total
        req = Request(method, url, path, body=body, headers=headers, stream=stream, timeout=t,
                      max_retries=max_retries, beta=beta, options=opts)
        return await self._call(req)

    async def close(self) -> None:
        """Finish and release everything: wait for cache entries being stored, close the limits
        backend, write the request-log rows of the calls made so far, then close the transport (one
        passed in with `transport=` too). Idempotent; `async with AsyncClient() as client:` calls it."""
        if not self._closed:
            self._closed = True
            if self.cache is not None:
                await self.cache.aclose()  # waits for answers still being stored
            if self.limits is not None:
                await self.limits.aclose()
            if self.logs is not None:
                await self.logs.aclose()  # rows of the calls made so far are written
            await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
