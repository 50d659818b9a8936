"""Is the auto tiling policy the faster path? Whole-image against tiled passes, side by side.

    python benchmarks/bench_tiling.py                       # x4, several sizes, 3 rounds
    python benchmarks/bench_tiling.py --json benchmarks/results/tiling-<cpu>.json

For each input size: ``Upscaler(tile=0)`` (whole image) and ``tile=256`` (``--tiles``),
interleaved in a balanced order, median of ``--repeats`` rounds after a warm-up round,
plus what ``tile="auto"`` picks for that size.
Pause the training campaign first (``scripts/campaign.sh pause``): timings on a loaded
machine say little (the issue's 33.6 s against 24.0 s were taken that way).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from seemore_sr.bench import cpu_description, interleaved
from seemore_sr.inference.upscaler import Upscaler

SIZES = [(384, 256), (512, 512), (640, 480), (768, 512), (1024, 768), (1280, 720)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="seemore-tiny-x4")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiles", type=int, nargs="+", default=[0, 256])
    p.add_argument("--json", help="write the timings here")
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"# {cpu_description()}, torch {torch.__version__}, threads {torch.get_num_threads()}, {args.model}")
    ups = {t: Upscaler(args.model, device="cpu", tile=t) for t in args.tiles}
    auto = Upscaler(args.model, device="cpu")
    rng = np.random.default_rng(0)
    ups[args.tiles[0]](rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # warm-up
    rows = []
    print(f"{'size':>10} " + " ".join(f"{'tile ' + str(t) if t else 'whole':>10}" for t in args.tiles) + "   auto")
    for w, h in SIZES:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        times = {t: [] for t in args.tiles}
        for up in ups.values():  # a warm-up round: oneDNN builds its kernels per shape
            up(img)
        for t in interleaved(ups, args.repeats):
            start = time.perf_counter()
            ups[t](img)
            times[t].append(time.perf_counter() - start)
        med = {t: statistics.median(v) for t, v in times.items()}
        picked = auto.tiled(h, w)
        best = min(med, key=med.get)
        rows.append({"size": [w, h], "seconds": times, "auto": picked, "fastest": best})
        cells = " ".join(f"{med[t]:>9.2f}s" for t in args.tiles)
        ratio = med.get(picked, med[best]) / med[best]
        verdict = "fastest" if ratio <= 1.05 else f"{ratio:.2f}x slower"
        print(f"{w:>5}x{h:<4} {cells}   {picked or 'whole'} ({verdict})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            meta = {"cpu": cpu_description(), "model": args.model, "repeats": args.repeats}
            json.dump({**meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
