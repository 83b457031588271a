# The gateway config: the example loads as written, library tables become the library's
# settings types, and every mistake names the key and its line.
from __future__ import annotations

import pytest

from deepseek_kit._steps.limits.step import Limits
from deepseek_kit._steps.router import Routing
from deepseek_kit.server.gateway import GatewayConfigError, load_gateway_config, parse_gateway_config

EXAMPLE = '''\
[gateway]
listen = "127.0.0.1:8080"
state = "sqlite:///var/lib/dsk/gateway.db"     # or "redis://127.0.0.1:6379/0" for several workers/hosts
admin_key_env = "DSK_ADMIN_KEY"

[[upstream]]
name = "deepseek"
base_url = "https://api.deepseek.com"
api_key_env = "DEEPSEEK_API_KEY"

[[upstream]]
name = "local"
base_url = "http://10.0.0.5:8000/v1"
kind = "vllm"                                  # deepseek | vllm | sglang | ollama | llamacpp | openai
priority = 1
models = { "deepseek-flash" = "deepseek-ai/DeepSeek-V4-Flash" }
'''


def test_the_documented_example_loads(tmp_path):
    p = tmp_path / "gateway.toml"
    p.write_text(EXAMPLE)
    cfg = load_gateway_config(p, env={"DEEPSEEK_API_KEY": "sk-real"})
    assert (cfg.host, cfg.port, cfg.state, cfg.admin_key_env) == (
        "127.0.0.1", 8080, "sqlite:///var/lib/dsk/gateway.db", "DSK_ADMIN_KEY")
    deepseek, local = cfg.upstreams
    assert deepseek.api_key == "sk-real" and "sk-real" not in repr(cfg)
    assert local.kind == "vllm" and local.priority == 1 and local.api_key is None
    assert local.models == {"deepseek-flash": "deepseek-ai/DeepSeek-V4-Flash"}
    assert cfg.aliases == {"deepseek-chat": "deepseek-flash", "deepseek-reasoner": "deepseek-flash"}
    assert {"deepseek-flash", "deepseek-v4-pro", "deepseek-chat"} <= set(cfg.served_models())


def test_library_tables():
    cfg = parse_gateway_config(EXAMPLE + '''
[routing]
strategy = "least_latency"

[limits]
rpm = 600
max_in_flight = 100

[timeout]
first_token = 20.0

[models]
aliases = { "fast" = "deepseek-flash" }
served = ["deepseek-flash"]
''', env={})
    assert cfg.routing == Routing(strategy="least_latency")
    assert isinstance(cfg.limits, Limits) and cfg.limits.rpm == 600 and cfg.limits.max_in_flight == 100
    assert cfg.timeout.first_token == 20.0
    assert cfg.served_models() == ("deepseek-flash", "fast")


@pytest.mark.parametrize(("extra", "line", "words"), [
    ('\n[gateway2]\nx = 1\n', 18, ["[gateway2]", "unknown table"]),
    ('\n[routing]\nstrategy = "fastest"\n', 19, ["[routing] strategy", "fastest"]),
    ('\n[limits]\nrpm = 5\nburstt = 2\n', 20, ["[limits] burstt", "unknown key"]),
    ('\n[timeout]\nfirst_token = "soon"\n', 19, ["[timeout] first_token"]),
])
def test_mistakes_name_the_key_and_line(extra, line, words):
    with pytest.raises(GatewayConfigError) as e:
        parse_gateway_config(EXAMPLE + extra, path="gw.toml", env={})
    msg = str(e.value)
    assert f"gw.toml, line {line}:" in msg, msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize(("old", "new", "line", "words"), [
    ('listen = "127.0.0.1:8080"', 'listen = 8080', 2, ["[gateway] listen", "a string"]),
    ('listen = "127.0.0.1:8080"', 'listen = "nowhere"', 2, ["HOST:PORT"]),
    ('admin_key_env = "DSK_ADMIN_KEY"', 'admin_key = "x"', 4, ["[gateway] admin_key", "unknown key"]),
    ('kind = "vllm"', 'kind = "tgi"', 14, ["[[upstream]] #2 kind", "vllm"]),
    ('priority = 1', 'priority = "high"', 15, ["[[upstream]] #2 priority", "an integer"]),
    ('name = "local"', 'name = "deepseek"', 12, ["used twice"]),
    ('base_url = "http://10.0.0.5:8000/v1"', 'base_url = "ftp://x"', 13, ["[[upstream]] #2 base_url"]),
    ('"deepseek-ai/DeepSeek-V4-Flash" }', '3 }', 16, ["models"]),
    ('state = "sqlite:///var/lib/dsk/gateway.db"', 'state = "postgres://db"', 3, ["[gateway] state"]),
])
def test_wrong_values_name_the_key_and_line(old, new, line, words):
    text = EXAMPLE.replace(old, new)
    assert text != EXAMPLE
    with pytest.raises(GatewayConfigError) as e:
        parse_gateway_config(text, path="gw.toml", env={})
    msg = str(e.value)
    assert f"gw.toml, line {line}:" in msg, msg
    for w in words:
        assert w in msg, msg


def test_keys_need_a_state_and_toml_errors_are_reported():
    with pytest.raises(GatewayConfigError, match="state"):
        parse_gateway_config(EXAMPLE.replace('state = "sqlite:///var/lib/dsk/gateway.db"', ""), env={})
    with pytest.raises(GatewayConfigError, match="not valid TOML"):
        parse_gateway_config("[gateway\n", env={})
    with pytest.raises(GatewayConfigError, match=r"\[\[upstream\]\]"):
        parse_gateway_config('[gateway]\nauth = "none"\n', env={})
