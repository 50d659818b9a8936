"""Time and peak RSS of one upscale with the default policy: a thin strip against a square.

    python benchmarks/bench_strip.py 1 65536     # the README's strip (x4, bundled weights)
    python benchmarks/bench_strip.py 1 65536 --tile 0   # the same as one whole-image pass
    python benchmarks/bench_strip.py 256 256
    python benchmarks/bench_strip.py 1 20000 --malloc-trim   # glibc's malloc_trim(0) after every tile

One run per process (peak RSS is per process); random pixels, ``Upscaler`` defaults.
"""

from __future__ import annotations

import argparse
import ctypes
import time

import numpy as np
import torch

from seemore_sr.bench import cpu_description
from seemore_sr.inference.upscaler import Upscaler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("height", type=int)
    p.add_argument("width", type=int)
    p.add_argument("--model", default="seemore-tiny-x4")
    p.add_argument("--tile", type=int, help="0: one whole-image pass (the policy before tiles by area); default auto")
    p.add_argument(
        "--malloc-trim", action="store_true", help="hand freed heap memory back to the system after every tile (glibc)"
    )
    args = p.parse_args()
    trim = ctypes.CDLL("libc.so.6").malloc_trim if args.malloc_trim else None

    def after_tile(done: int, total: int) -> None:
        trim(0)

    tile = "auto" if args.tile is None else args.tile
    up = Upscaler(args.model, device="cpu", tile=tile, progress=after_tile if trim else False)
    img = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    start = time.perf_counter()
    out = up(img)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as f:
        peak = int(next(line for line in f if line.startswith("VmHWM")).split()[1]) // 1024
    print(f"# {cpu_description()}, torch {torch.__version__}, threads {torch.get_num_threads()}, {args.model}")
    tile = up.tiled(args.height, args.width)
    print(f"{args.height}x{args.width} -> {out.shape[1]}x{out.shape[0]}: tile {tile or 'whole'}"
          f"{', malloc_trim' if args.malloc_trim else ''}, "
          f"{seconds:.1f} s, peak RSS {peak} MB")  # fmt: skip


if __name__ == "__main__":
    main()
