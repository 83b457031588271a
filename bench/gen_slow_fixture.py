#!/usr/bin/env python3
"""Write an nginx include serving the shared fixture stream SLOWLY, for the 1,000-stream RSS test.

  location /sse-slow/v1/chat/completions: the same 201 events + [DONE] as the shared
  `stream.sse` (events come from the shared gen_fixtures.stream_events()), one HTTP chunk per
  event (echo module), with `echo_sleep GAP` between events, so each stream stays open for about
  201 * GAP seconds (default 0.05 s -> ~10 s) and 1,000 streams are open at the same time.

usage: gen_slow_fixture.py OUT.conf [--gap 0.05]
Needs the echo module loaded (run.sh does it).
"""
import argparse
import os
import sys
from pathlib import Path


def shared_bench() -> Path:
    env = os.environ.get("DSK_SHARED_BENCH")
    if env:
        p = Path(env)
        return p.parent if p.name == "drivers" else p
    return Path(__file__).resolve().parents[2] / "shared" / "bench"


sys.path.insert(0, str(shared_bench() / "fixtures"))
from gen_fixtures import stream_events  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gap", type=float, default=float(os.environ.get("SLOW_GAP", "0.05")))
    a = ap.parse_args()
    events, _content = stream_events()
    lines = ["location = /sse-slow/v1/chat/completions {",
             '    default_type "text/event-stream; charset=utf-8";',
             "    add_header Cache-Control no-cache;"]
    for i, ev in enumerate([*events, "data: [DONE]\n\n"]):
        assert "\\" not in ev and "'" not in ev
        if i:
            lines.append(f"    echo_sleep {a.gap:g};")
        escaped = ev.replace("\n", "\\n")
        lines.append(f"    echo -n '{escaped}';")
        lines.append("    echo_flush;")
    lines.append("}")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}: {len(events) + 1} events, gap {a.gap:g} s (~{len(events) * a.gap:.1f} s/stream)")


if __name__ == "__main__":
    main()
