"""Training throughput of each CPU option, side by side (interleaved repeats).

    python benchmarks/bench_train.py --repeats 5

Options: fp32 NCHW, fp32 channels_last, bf16 autocast (NCHW / channels_last). One step =
forward, L1+FFT loss, backward, Adam, on a batch of the ``cpu`` recipe (16 x 48px LR
patches, SeemoRe-T x2). Also reports the data pipeline: seconds to preload the
training set and the time to cut one batch from memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from seemore_sr import create_model
from seemore_sr.training.trainer import sr_loss


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--data", default="../shared/data/train/T91", help="folder for the data-pipeline timing")
    args = p.parse_args()
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    torch.manual_seed(0)
    lr = torch.rand(args.batch, 3, args.patch, args.patch)
    hr = torch.rand(args.batch, 3, 2 * args.patch, 2 * args.patch)
    setups = {}
    for name, cl, bf16 in [("fp32", False, False), ("fp32+channels_last", True, False),
                           ("bf16", False, True), ("bf16+channels_last", True, True)]:  # fmt: skip
        m = create_model("seemore-tiny-x2").train()
        if cl:
            m = m.to(memory_format=torch.channels_last)
        setups[name] = (m, torch.optim.Adam(m.parameters(), 1e-3), cl, bf16)

    def step(name):
        m, opt, cl, bf16 = setups[name]
        x = lr.contiguous(memory_format=torch.channels_last) if cl else lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            sr = m(x)
        loss = sr_loss(sr.float(), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = {k: [] for k in setups}
    for k in setups:
        step(k)  # warm-up
    for _ in range(args.repeats):
        for k in setups:
            t = time.perf_counter()
            step(k)
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["fp32"])
    print(f"batch {args.batch} x {args.patch}px LR, {args.repeats} interleaved repeats")
    print(f"{'option':<20} {'it/s':>6} {'s/it (median)':>14} {'vs fp32':>8}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:<20} {1 / med:>6.2f} {med:>14.3f} {base / med:>7.2f}x")

    from seemore_sr.data.paired import PairedImages

    t = time.perf_counter()
    data = PairedImages([args.data], 2, args.patch, skip_small=True)
    load = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(20):
        data.batch(i, args.batch)
    per_batch = (time.perf_counter() - t) / 20 * 1e3
    print(f"data: preload {len(data)} images of {args.data} in {load:.1f}s; one batch in {per_batch:.1f} ms")


if __name__ == "__main__":
    main()
