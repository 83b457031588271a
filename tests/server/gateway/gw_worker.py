"""A second (and third) gateway process for the state tests, run as a script:

    python gw_worker.py budget URL TOKEN N WORST GO_FILE   -> admits N concurrent requests, prints JSON
    python gw_worker.py watch URL TOKEN                    -> authenticates every 10 ms, prints
                                                              "ready", then "refused <monotonic>" once

Pepper from DSK_GATEWAY_PEPPER. Both wait on real state only (SQLite file or redis-server)."""

import asyncio
import json
import os
import random
import sys
import time
from decimal import Decimal

from deepseek_kit.server.gateway.keys import BudgetExceededError, InvalidKeyError
from deepseek_kit.server.gateway.state import open_state


async def budget(url, token, n, worst, go_file):
    st = open_state(url, pepper=os.environ["DSK_GATEWAY_PEPPER"].encode())
    key = await st.authenticate(token, None)
    print("ready", flush=True)
    # the parent creates go_file to start every worker process at once: an asyncio.Event cannot cross
    # processes, and a stat of a local file does not block the loop in any way that matters here
    while not os.path.exists(go_file):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.002)
    worst = Decimal(worst)
    rng = random.Random(os.getpid())
    charged = []
    refused = 0

    async def one():
        nonlocal refused
        await asyncio.sleep(
            rng.random() * 0.1
        )  # arrivals spread over 100 ms: settles free room for later ones
        try:
            res = await st.reserve(key, worst, model="deepseek-flash")
        except BudgetExceededError:
            refused += 1
            return
        await asyncio.sleep(rng.random() * 0.01)  # the upstream call
        actual = (worst * rng.randint(1, 10) / 10).quantize(Decimal("1e-9"))
        await st.settle(res, actual)
        charged.append(actual)

    await asyncio.gather(*(one() for _ in range(n)))
    await st.aclose()
    print(
        json.dumps({"admitted": len(charged), "refused": refused, "charged": str(sum(charged, Decimal(0))),
                    "leases": st.leases.granted, "drawn": st.leases.drawn}),
        flush=True,
    )


async def watch(url, token):
    st = open_state(url, pepper=os.environ["DSK_GATEWAY_PEPPER"].encode())
    await st.authenticate(token, None)
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await st.authenticate(token, None)
        except InvalidKeyError:
            print(f"refused {time.monotonic()}", flush=True)
            break
        await asyncio.sleep(0.01)
    await st.aclose()


if __name__ == "__main__":
    if sys.argv[1] == "budget":
        asyncio.run(budget(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]))
    else:
        asyncio.run(watch(sys.argv[2], sys.argv[3]))
