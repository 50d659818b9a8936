"""The trainer's footprint: peak RSS and the time from the command to its first iteration.

    python benchmarks/bench_train_footprint.py [--scale 4] [--json F]

Runs ``seemore train`` (recipe ``cpu``: SeemoRe-T, batch 16 x 48 px, 1 thread) on
``../shared/data/train`` + ``train-more`` for a few iterations, in a fresh process per
case: with an empty image cache (first run), then resuming it (cache filled), each with
``train.micro_batch`` 0 (the whole batch at once) and 2. Peak RSS is the child's
``ru_maxrss``; "first iteration" is the wall time from starting the command to the first
row of ``metrics.jsonl`` (``log_every=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seemore_sr.bench import cpu_description

DATA = "[../shared/data/train, ../shared/data/train-more]"


def case(run: Path, cache: Path, micro: int, iterations: int, scale: int) -> dict:
    sets = [f"model.scale={scale}", f"data.train={DATA}", "data.val=null", f"train.iterations={iterations}",
            "train.warmup=1", "train.log_every=1", "train.threads=1", f"train.micro_batch={micro}"]  # fmt: skip
    cmd = [sys.executable, "-m", "seemore_sr", "train", "cpu", "--run", str(run), "--no-progress"]
    cmd += [a for s in sets for a in ("--set", s)]
    code = (
        "import resource, subprocess, sys\n"
        f"subprocess.run({cmd!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    metrics = run / "metrics.jsonl"
    before = metrics.read_text().count("\n") if metrics.exists() else 0
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "SEEMORE_CACHE": str(cache)})  # fmt: skip
    first = None
    while proc.poll() is None:
        if first is None and metrics.exists() and metrics.read_text().count("\n") > before:
            first = time.perf_counter() - start
        time.sleep(0.05)
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"seemore train failed ({proc.returncode})")
    return {"peak_rss_mb": int(out.split()[-1]) / 1024, "first_iteration_s": first}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for micro in (0, 2):
            cache = Path(tmp) / f"cache{micro}"
            run = Path(tmp) / f"run{micro}"
            rows[f"micro_batch {micro}, first run (empty cache)"] = case(run, cache, micro, args.iterations, args.scale)
            rows[f"micro_batch {micro}, resumed (cache filled)"] = case(
                run, cache, micro, 2 * args.iterations, args.scale
            )
    print(f"# {cpu_description()}; seemore train cpu, T x{args.scale}, batch 16 x 48, 1 thread, train/ + train-more/")
    for k, r in rows.items():
        print(f"{k:<44} peak RSS {r['peak_rss_mb']:7.0f} MB   first iteration after {r['first_iteration_s']:5.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": cpu_description(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
