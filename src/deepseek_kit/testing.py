"""A pytest plugin for testing your own app against the DeepSeek emulator (docs/testing.md).

Enable it in a `conftest.py` with `pytest_plugins = ["deepseek_kit.testing"]` (or run
`pytest -p deepseek_kit.testing`). It is deliberately not auto-loaded through an entry point:
a project with its own `emulator` fixtures would see them clash.

    async def test_my_app_survives_overload(deepseek_emulator):
        deepseek_emulator.fail(status=503, times=2)
        async with deepseek_emulator.client() as client:
            answer = await my_app.ask(client, "Hello")
        deepseek_emulator.assert_called(times=3)  # two 503s, then the answer
        assert deepseek_emulator.last_request.json["model"] == "deepseek-flash"

Fixtures: `deepseek_emulator` (an emulator per test) and `deepseek_emulator_session` (one for the
session, reset before each test); both are an `EmulatorHandle`: a real server on a free
127.0.0.1 port. `deepseek_emulator_config` (override it in your conftest) is the
`EmulatorConfig` the per-test emulator starts with.

Faults go through the emulator's own fault language (the `X-DSK-Emulate` directives of
docs/emulator.md), set server-wide for the requests that follow: each call (`fail`, `stall`,
`reset`, ...) replaces the fault before it, and `times` bounds how many requests it hits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import pytest

from deepseek_kit import AsyncClient, Client
from deepseek_kit.server import EmulatorConfig, EmulatorState, EmulatorThread

__all__ = [
    "EmulatorHandle",
    "ReceivedRequest",
    "deepseek_emulator",
    "deepseek_emulator_config",
    "deepseek_emulator_session",
]

#: The key the handle's clients use; any well-formed bearer key works unless the config lists keys.
DEFAULT_API_KEY = "sk-test-deepseek-kit"
_keys = itertools.count(1)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the emulator received: `method`, `path`, `headers` (credentials masked to
    their last four characters: `Bearer ****abcd`) and the raw `body` (b"" when it was above
    `EmulatorConfig.recent_body_max`). `json` is the decoded body (None if it is not JSON)."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def json(self) -> Any:
        try:
            return msgspec.json.decode(self.body) if self.body else None
        except msgspec.DecodeError:
            return None

    @property
    def directives(self) -> str:
        """The request's own `X-DSK-Emulate` header ("" without one)."""
        return next((v for k, v in self.headers.items() if k.lower() == "x-dsk-emulate"), "")


class EmulatorHandle:
    """A running emulator and what a test does with it: clients, faults, and what it received.
    The pytest fixtures build it around an `EmulatorThread` (`emulator`); `api_key` is the key its
    `client()` and `sync_client()` send (default "sk-test-deepseek-kit"; in the emulator each key
    is an account of its own)."""

    def __init__(self, emulator: EmulatorThread, api_key: str = DEFAULT_API_KEY) -> None:
        self.emulator = emulator
        self.api_key = api_key

    # -- connection -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: give it to your client as `base_url`."""
        return self.emulator.base_url

    @property
    def config(self) -> EmulatorConfig:
        """The emulator's settings (`EmulatorConfig`)."""
        return self.emulator.config

    @property
    def state(self) -> EmulatorState:
        """The emulator's counters, balances and caches (`EmulatorState`)."""
        return self.emulator.state

    def client(self, **kwargs: Any) -> AsyncClient:
        """An `AsyncClient` for this emulator (`async with handle.client() as c:`); keyword
        arguments go to `AsyncClient` (e.g. `max_retries=0`, `timeout=1.0`)."""
        return AsyncClient(**{"api_key": self.api_key, "base_url": self.base_url, **kwargs})

    def sync_client(self, **kwargs: Any) -> Client:
        """A sync `Client` for this emulator (`with handle.sync_client() as c:`)."""
        return Client(**{"api_key": self.api_key, "base_url": self.base_url, **kwargs})

    # -- faults ---------------------------------------------------------------------------------

    def inject(self, directives: str, times: int | None = None) -> None:
        """Any fault of the emulator's directive language (docs/emulator.md), e.g.
        `"status=502;html"` or `"empty_body"`, for the next `times` requests (None: all of them).
        Replaces the fault set before. A bad directive raises ValueError here, not in the app."""
        parts = [directives.strip().strip(";")] if directives.strip() else []
        if times is not None:
            # a fresh key: the emulator counts `times` per distinct directive string
            parts += [f"times={times}", f"key=deepseek-kit-testing-{next(_keys)}"]
        text = ";".join(parts)
        replace(self.config, faults=text)  # validates: EmulatorConfigError (a ValueError) names the item
        self.config.faults = text

    def fail(self, status: int = 503, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests with DeepSeek's error for `status` (429, 500, 502,
        503, 504...); `retry_after` adds a `Retry-After` header (seconds)."""
        directives = f"status={status}"
        if retry_after is not None:
            directives += f";retry_after={retry_after:g}"
        self.inject(directives, times)

    def rate_limit(self, retry_after: float = 1.0, times: int = 1) -> None:
        """`429 Rate Limit Reached` with `Retry-After` for the next `times` requests."""
        self.fail(429, times, retry_after)

    def stall(self, seconds: float, times: int = 1, keepalive: bool = True) -> None:
        """Hold the next `times` answers for `seconds` before the first token. With `keepalive`
        (what DeepSeek does under load) the response starts at once and keep-alives (SSE
        comments, blank lines) flow meanwhile; without, nothing arrives, not even headers."""
        self.inject(f"stall_first_token={seconds:g}" if keepalive else f"delay_headers={seconds:g}", times)

    def reset(self, after_chunks: int | None = None, times: int = 1) -> None:
        """Reset the connection of the next `times` requests: before any response when
        `after_chunks` is None, else after that many stream chunks (mid-answer)."""
        self.inject("reset_before_headers" if after_chunks is None else f"reset_after={after_chunks}", times)

    def insufficient_resources(self, after_chunks: int = 0, times: int = 1) -> None:
        """End the next `times` answers with `finish_reason: "insufficient_system_resource"` after
        `after_chunks` chunks (DeepSeek's way of giving up mid-answer)."""
        self.inject(f"insufficient_after={after_chunks}", times)

    def clear_faults(self) -> None:
        """No fault from now on."""
        self.config.faults = ""

    # -- what it received -----------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The requests received so far, oldest first (the last `EmulatorConfig.recent_bodies`)."""
        return [ReceivedRequest(m, p, h, b) for m, p, h, b in list(self.state.received)]

    @property
    def last_request(self) -> ReceivedRequest:
        """The latest request; AssertionError when there was none."""
        got = self.requests
        assert got, "the DeepSeek emulator received no request"
        return got[-1]

    def assert_called(self, times: int | None = None, path: str | None = None) -> list[ReceivedRequest]:
        """Assert requests were received (to `path`, e.g. "/chat/completions", when given):
        exactly `times` of them, or at least one. Returns them."""
        got = [r for r in self.requests if path is None or r.path == path]
        where = f" to {path}" if path else ""
        if times is None:
            assert got, f"expected requests{where}, the DeepSeek emulator received none"
        else:
            assert len(got) == times, (f"expected {times} request{'s' if times != 1 else ''}{where}, "
                                       f"the DeepSeek emulator received {len(got)}: "
                                       f"{[f'{r.method} {r.path}' for r in got]}")
        return got

    def assert_not_called(self) -> None:
        """Assert the emulator received no request."""
        self.assert_called(times=0)

    def forget(self) -> None:
        """A fresh start: no fault, no recorded request, counters and balances as configured."""
        self.clear_faults()
        self.state.forget()


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def deepseek_emulator_config() -> EmulatorConfig:
    """The `EmulatorConfig` of `deepseek_emulator`; override this fixture to change it."""
    return EmulatorConfig()


@pytest.fixture
def deepseek_emulator(deepseek_emulator_config: EmulatorConfig) -> Iterator[EmulatorHandle]:
    """A DeepSeek emulator for this test only, on a free 127.0.0.1 port."""
    with EmulatorThread(deepseek_emulator_config) as emulator:
        yield EmulatorHandle(emulator)


@pytest.fixture(scope="session")
def _deepseek_emulator_server() -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorConfig()) as emulator:
        yield emulator


@pytest.fixture
def deepseek_emulator_session(_deepseek_emulator_server: EmulatorThread) -> Iterator[EmulatorHandle]:
    """One DeepSeek emulator for the whole session (faster to start), reset before and after
    each test: no fault, no recorded request, balances as configured."""
    handle = EmulatorHandle(_deepseek_emulator_server)
    handle.forget()
    yield handle
    handle.forget()
