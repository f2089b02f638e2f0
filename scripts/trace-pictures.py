#!/usr/bin/env python3
"""Make the trace pictures in docs/traces/ again.

    scripts/trace-pictures.py

Boots the kernel once per picture with `cargo run -- --trace ...` (the
commands docs/tracing.md shows), then redraws each SVG around the part that
tells the story with `cargo run -- trace-convert RAW OUT --window FROM..TO`
(the window found in the trace's own JSON), and copies it to docs/traces/.
The traces themselves stay in target/traces/ for Perfetto. Takes a few
minutes under TCG. Uses only the Python standard library.
"""
import json
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "traces"
PICTURES = ROOT / "docs" / "traces"

# name, CPUs, kernel arguments, the span (name prefix) the picture is drawn
# around (None: the whole trace), margin around it in microseconds.
PICTURES_TO_MAKE = [
    ("bring-up-parallel", 8, ["trace=smp,ipi", "then=exit"], "bring-up", 500),
    ("bring-up-serial", 8, ["trace=smp,ipi", "smp=serial", "then=exit"], "bring-up", 500),
    ("shootdown-preempt", 4,
     ["trace=ipi,tlb,sched", "ipi_wait=preempt", "test=tlb_realtime_thread_during_a_slow_shootdown"],
     "shootdown", 2000),
    ("shootdown-spin", 4,
     ["trace=ipi,tlb,sched", "ipi_wait=spin", "test=tlb_realtime_thread_during_a_slow_shootdown"],
     "shootdown", 2000),
    ("panic", 4, ["trace=all", "then=panic", "panic=exit"], "panic", None),
]


def run(command):
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT)


def window_around(trace_json, prefix, margin_us):
    """FROM_US..TO_US around the first span named `prefix`..., or for the
    panic, from its first mark to the end."""
    events = json.loads(trace_json.read_text())["traceEvents"]
    if prefix == "panic":
        start = min(e["ts"] for e in events if e.get("ph") == "i" and e["name"] == "panic")
        end = max(e["ts"] + e.get("dur", 0) for e in events if "ts" in e)
        return f"{int(start) - 200}..{int(end) + 200}"
    spans = [e for e in events if e.get("ph") == "X" and e["name"].startswith(prefix)]
    if not spans:
        sys.exit(f"{trace_json}: no span named {prefix}...")
    span = spans[0]
    return f"{int(span['ts']) - margin_us}..{int(span['ts'] + span['dur']) + margin_us}"


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    PICTURES.mkdir(parents=True, exist_ok=True)
    for name, cpus, kernel_args, around, margin in PICTURES_TO_MAKE:
        trace_json = WORK / f"{name}.json"
        run(["cargo", "run", "-q", "--", "--smp", str(cpus), "--timeout", "300",
             "--trace", str(trace_json), "--", *kernel_args])
        window = window_around(trace_json, around, margin)
        drawn = WORK / f"{name}-window.json"
        if run(["cargo", "run", "-q", "--", "trace-convert", "--window", window,
                str(WORK / f"{name}.ktrace"), str(drawn)]).returncode != 0:
            sys.exit(f"trace-convert failed for {name}")
        shutil.copy(drawn.with_suffix(".svg"), PICTURES / f"{name}.svg")
        print(f"docs/traces/{name}.svg: {window} us", flush=True)


if __name__ == "__main__":
    main()
