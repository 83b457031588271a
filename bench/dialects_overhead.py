#!/usr/bin/env python3
"""What dialect normalization costs DeepSeek's own answers: in-process, no sockets, paired rounds.

The dialect rules (src/deepseek_kit/_wire/dialects.py, _wire/accumulate.py) run where answers are decoded
and are triggered by fields DeepSeek never sends. This measures what the checks cost when nothing
triggers, on DeepSeek-shaped bytes (the shared fixtures when found, else a built-in 200-chunk
thinking stream and a 583-byte-like completion):

  stream      per chunk: msgspec decode (reference, 1.00) | decode + accumulator
              [| decode + the accumulator of --baseline-rev, i.e. before the dialect rules]
  nonstream   per body:  msgspec decode (1.00) | decode + normalize_completion

Rounds are interleaved and the order rotates; reported are medians over rounds of each variant's
ns per unit and its ratio to the reference measured in the same round.

usage: dialects_overhead.py [--rounds 30] [--n 20] [--baseline-rev REV]
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from deepseek_kit._wire.accumulate import ChunkAccumulator
from deepseek_kit._wire.dialects import normalize_completion
from deepseek_kit._wire.types import chat_completion_decoder, chunk_decoder

ROOT = Path(__file__).resolve().parents[1]


def fixtures():
    env = os.environ.get("DSK_SHARED_BENCH")
    shared = Path(env) if env else ROOT.parent / "shared" / "bench"
    sys.path[:0] = [str(shared / "fixtures")]
    try:
        from gen_fixtures import completion_body, stream_events
        events = [e.strip()[len("data: "):].encode() for e in stream_events()[0]]
        return "shared fixtures", completion_body()[0].encode(), [e for e in events if e != b"[DONE]"]
    except Exception:
        pass
    head = {"id": "f6b1", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-flash",
            "system_fingerprint": "fp_x"}

    def ev(delta, finish=None, usage=None):
        return json.dumps({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                 "finish_reason": finish}], "usage": usage}).encode()
    evs = [ev({"role": "assistant", "content": None, "reasoning_content": ""})]
    evs += [ev({"content": None, "reasoning_content": "word "}) for _ in range(100)]
    evs += [ev({"content": "word ", "reasoning_content": None}) for _ in range(98)]
    evs.append(ev({"content": "", "reasoning_content": None}, "stop",
                  {"prompt_tokens": 9, "completion_tokens": 199, "total_tokens": 208}))
    body = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "deepseek-flash",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!",
                                    "reasoning_content": "Think."}, "logprobs": None,
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}).encode()
    return "built-in", body, evs


def baseline_accumulator(rev):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/deepseek_kit/_wire/accumulate.py"],
                         check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("deepseek_kit._accumulate_baseline", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "deepseek_kit"
    exec(compile(src, f"{rev}:_wire/accumulate.py", "exec"), mod.__dict__)
    return mod.ChunkAccumulator


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--n", type=int, default=20, help="streams / 10 bodies per round and variant")
    ap.add_argument("--baseline-rev")
    a = ap.parse_args()
    source, body, events = fixtures()
    dec, cdec = chunk_decoder.decode, chat_completion_decoder.decode
    accs = {"decode+accumulate": ChunkAccumulator}
    if a.baseline_rev:
        accs[f"decode+accumulate@{a.baseline_rev}"] = baseline_accumulator(a.baseline_rev)

    def s_ref():
        for _ in range(a.n):
            for e in events:
                dec(e)

    def s_acc(cls):
        def run():
            for _ in range(a.n):
                acc = cls()
                add = acc.add
                for e in events:
                    add(dec(e))
        return run

    def n_ref():
        for _ in range(a.n * 10):
            cdec(body)

    def n_norm():
        for _ in range(a.n * 10):
            normalize_completion(cdec(body))

    groups = {
        "stream": (len(events) * a.n, {"decode": s_ref, **{k: s_acc(c) for k, c in accs.items()}}),
        "nonstream": (a.n * 10, {"decode": n_ref, "decode+normalize_completion": n_norm}),
    }
    print(f"# dialects_overhead: {source}, {len(events)} chunks/stream, {len(body)}-byte body, "
          f"{a.rounds} rounds, python {sys.version.split()[0]}")
    for gname, (units, variants) in groups.items():
        names = list(variants)
        per: dict[str, list[float]] = {k: [] for k in names}
        ratio: dict[str, list[float]] = {k: [] for k in names}
        for fn in variants.values():
            fn()  # warm-up
        for r in range(a.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            got = {}
            for k in order:
                t0 = time.perf_counter_ns()
                variants[k]()
                got[k] = (time.perf_counter_ns() - t0) / units
            for k in names:
                per[k].append(got[k])
                ratio[k].append(got[k] / got["decode"])
        print(f"\n{gname} (ns per {'chunk' if gname == 'stream' else 'body'}, median; ratio to decode "
              "in the same round, median [p25-p75])")
        for k in names:
            q = statistics.quantiles(ratio[k], n=4)
            print(f"  {k:<42} {statistics.median(per[k]):8.0f} ns   "
                  f"{statistics.median(ratio[k]):.3f} [{q[0]:.3f}-{q[2]:.3f}]")


if __name__ == "__main__":
    main()
