"""A lever for CPU inference speed, measured: run a residual group's local stages (``finish``: MoRE,
the FFN, SME) in row bands, so each band's chain of GEMMs and elementwise passes stays
in L2, against one whole-image pass. Bands need a halo (SME's striped conv and the FFNs'
3x3 gates: 7 rows) and are recomputed there.

Also measured: the image cut into as many bands as there are threads, each band run on
one thread at the same time (no intra-op synchronisation; every kernel single-threaded).

    python benchmarks/bench_bands.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from seemore_sr import create_model, optimize
from seemore_sr.bench import cpu_description, interleaved
from seemore_sr.models.complexity import paper_input_size

HALO = 7


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.manual_seed(0)
    fast = optimize(create_model("seemore-tiny-x4"))
    g = fast.groups[0]
    h, w = paper_input_size(4)
    x = torch.rand(1, h, w, fast.config.embedding_dim)

    def band(y0: int, y1: int) -> torch.Tensor:
        """Rows ``y0:y1`` of ``finish``, computed from the band with its halo."""
        ya, yb = max(0, y0 - HALO), min(h, y1 + HALO)
        return g.finish(*(t[:, ya:yb].contiguous() for t in (x, a, k)), routing)[:, y0 - ya : y1 - ya]

    def banded(rows: int):
        return lambda: torch.cat([band(y0, min(h, y0 + rows)) for y0 in range(0, h, rows)], 1)

    threads = torch.get_num_threads()
    workers = ThreadPoolExecutor(threads)

    def parallel() -> torch.Tensor:
        torch.set_num_threads(1)  # each band's kernels run on the thread that calls them
        try:
            cuts = [h * i // threads for i in range(threads + 1)]
            jobs = [workers.submit(band, y0, y1) for y0, y1 in zip(cuts[:-1], cuts[1:], strict=True)]
            return torch.cat([j.result() for j in jobs], 1)
        finally:
            torch.set_num_threads(threads)

    with torch.no_grad():
        a, k = g.branches(x)
        routing = g.routing(a.mean((1, 2)))
        paths = {"whole image": lambda: g.finish(x, a, k, routing)}
        paths |= {f"bands of {r} rows": banded(r) for r in (8, 16, 32, 64)}
        if threads > 1:
            paths[f"{threads} bands in parallel, 1 thread each"] = parallel
        ref = paths["whole image"]()
        diff = max((f() - ref).abs().max().item() for f in paths.values())
        times = {name: [] for name in paths}
        for name in interleaved(paths, args.repeats):
            t = time.perf_counter()
            paths[name]()
            times[name].append(time.perf_counter() - t)
    print(f"# machine: {cpu_description()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"# one group's finish stage, tiny x4, {w}x{h} features; {args.repeats} interleaved rounds, balanced order")
    print(f"# banded against whole: max |diff| {diff:.1e}")
    base = statistics.median(times["whole image"])
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<36} {1e3 * med:7.1f} ms  ({base / med:.2f}x)")


if __name__ == "__main__":
    main()
