"""Threads and the OpenMP wait policy, on an idle or a busy machine.

    python benchmarks/bench_threads.py [--busy N] [--repeats 5] [--json F]

Each case runs in a fresh process (the wait policy is read when the OpenMP runtime
starts): ``optimize(seemore-tiny-x4)`` on a 320x180 input (720p output), fp32, median of
``--repeats`` calls after a warm-up, for 1 thread and for every core this process may use
(``os.sched_getaffinity``), with ``OMP_WAIT_POLICY`` unset (the runtime's default),
PASSIVE and ACTIVE. ``--busy N`` starts N processes that spin on the CPU meanwhile (another
program using the machine); without it the machine's current load is what it is.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys

from seemore_sr.bench import cpu_description

CHILD = """
import statistics, sys, time, torch
from seemore_sr import create_model, optimize
torch.set_num_threads({threads})
torch.manual_seed(0)
m = optimize(create_model("seemore-tiny-x4"))
x = torch.rand(1, 3, 180, 320)
with torch.no_grad():
    m(x)
    t = []
    for _ in range({repeats}):
        s = time.perf_counter(); m(x); t.append(time.perf_counter() - s)
print(1e3 * statistics.median(t), m.executor)
"""


def spin() -> None:
    while True:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", type=int, default=0, help="spinning processes beside the measurement")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    spinners = [mp.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for s in spinners:
        s.start()
    rows = {}
    try:
        for policy in ("default", "PASSIVE", "ACTIVE"):
            for threads in sorted({1, cores}):
                env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                if policy != "default":
                    env["OMP_WAIT_POLICY"] = policy
                code = CHILD.format(threads=threads, repeats=args.repeats)
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
                ms, executor = out.stdout.split()
                rows[f"{policy} / {threads} thread(s)"] = {"ms": float(ms), "executor": executor}
    finally:
        for s in spinners:
            s.terminate()
    load = os.getloadavg()[0]
    print(f"# {cpu_description()}; {cores} usable cores; {args.busy} spinning processes beside; load {load:.1f}")
    print(f"# optimize(seemore-tiny-x4), 320x180 -> 1280x720, fp32, median of {args.repeats} calls per process")
    best = min(r["ms"] for r in rows.values())
    for k, r in rows.items():
        print(f"{k:<28} {r['ms']:8.0f} ms  {r['ms'] / best:5.2f}x of the best  [{r['executor']}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_description(), "busy": args.busy, "load": load, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
