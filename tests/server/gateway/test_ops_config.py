# The operations keys of the gateway config: caps in [gateway] and [[upstream]], the balance poll
# periods; wrong values stop the start with the key and its line.
from __future__ import annotations

import pytest

from deepseek_kit.server.gateway import GatewayConfigError, parse_gateway_config

BASE = '[[upstream]]\nname = "a"\nbase_url = "http://127.0.0.1:1"\n'


def test_caps_and_balance_settings_are_read():
    cfg = parse_gateway_config('[gateway]\nauth = "none"\nrpm = 600\ntpm = 100000\nmax_in_flight = 50\n'
                               'balance_poll = 30\nbalance_recheck = 5\n\n' + BASE
                               + 'rpm = 60\nmax_in_flight = 4\n', env={})
    assert (cfg.rpm, cfg.tpm, cfg.max_in_flight) == (600, 100000, 50)
    assert (cfg.balance_poll, cfg.balance_recheck) == (30.0, 5.0)
    u = cfg.upstreams[0]
    assert (u.rpm, u.tpm, u.max_in_flight) == (60, None, 4)


@pytest.mark.parametrize("text, where", [
    ('[gateway]\nauth = "none"\nrpm = 0\n\n' + BASE, "line 3: [gateway] rpm"),
    ('[gateway]\nauth = "none"\nmax_in_flight = 1.5\n\n' + BASE, "line 3: [gateway] max_in_flight"),
    ('[gateway]\nauth = "none"\nbalance_poll = -1\n\n' + BASE, "line 3: [gateway] balance_poll"),
    ('[gateway]\nauth = "none"\n\n' + BASE + 'tpm = -5\n', "line 7: [[upstream]] #1 tpm"),
])
def test_bad_values_name_the_key_and_line(text, where):
    with pytest.raises(GatewayConfigError) as exc:
        parse_gateway_config(text, path="gw.toml", env={})
    assert f"gw.toml, {where}" in str(exc.value)
