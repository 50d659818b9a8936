"""Training throughput of each option, side by side (interleaved repeats).

    python benchmarks/bench_train.py --repeats 5
    python benchmarks/bench_train.py --device cuda --batch 32 --patch 64 --choose   # scripts/device_train.sh

Options: fp32 / bf16 autocast, each NCHW and channels_last; with ``--compile`` also
fp32 + channels_last with every expert computed (``dense``, the static graph) eagerly and
through ``torch.compile`` (inductor; the compile itself is not timed). One step = forward,
L1+FFT loss, backward, Adam, on random data of the batch's shape (SeemoRe-T x2).
``--choose`` prints one last line, ``PRECISION CHANNELS_LAST``, for the fastest option
(bf16 only where the device runs it natively). On the CPU it also reports the data
pipeline: seconds to preload the training set and the time to cut one batch from memory.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch

from seemore_sr import create_model
from seemore_sr.bench import cpu_description, interleaved
from seemore_sr.training.trainer import sr_loss


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--device", default="cpu")
    p.add_argument("--choose", action="store_true", help="print the fastest option as 'PRECISION CHANNELS_LAST'")
    p.add_argument("--json", help="write the timings here")
    p.add_argument("--compile", action="store_true", help="add the dense and torch.compile rows")
    p.add_argument("--data", default="../shared/data/train/T91", help="folder for the data-pipeline timing")
    args = p.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_description()
    print(f"# {name}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    lr = torch.rand(args.batch, 3, args.patch, args.patch, device=dev)
    hr = torch.rand(args.batch, 3, 2 * args.patch, 2 * args.patch, device=dev)
    # key: channels_last, bf16 autocast, dense experts, torch.compile
    options = {"fp32": (False, False, False, False), "fp32+channels_last": (True, False, False, False),
               "bf16": (False, True, False, False), "bf16+channels_last": (True, True, False, False)}  # fmt: skip
    if args.compile:
        options["fp32+channels_last+dense"] = (True, False, True, False)
        options["fp32+channels_last+compile"] = (True, False, True, True)
    setups = {}
    for key, (cl, bf16, dense, compiled) in options.items():
        m = create_model("seemore-tiny-x2").train().to(dev)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        fwd = functools.partial(torch.compile(m) if compiled else m, dense=dense)
        setups[key] = (fwd, torch.optim.Adam(m.parameters(), 1e-3), cl, bf16)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def step(key):
        fwd, opt, cl, bf16 = setups[key]
        x = lr.contiguous(memory_format=torch.channels_last) if cl else lr
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            sr = fwd(x)
        loss = sr_loss(sr.float(), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = {k: [] for k in setups}
    for k in setups:
        t = time.perf_counter()
        for _ in range(3 if dev.type == "cuda" or options[k][3] else 1):  # warm-up (cuDNN, inductor)
            step(k)
        print(f"warm-up {k}: {time.perf_counter() - t:.1f} s", flush=True)
    sync()
    for k in interleaved(setups, args.repeats):
        t = time.perf_counter()
        step(k)
        sync()
        times[k].append(time.perf_counter() - t)
    base = statistics.median(times["fp32"])
    print(f"batch {args.batch} x {args.patch}px LR on {dev}, {args.repeats} interleaved repeats, balanced order")
    print(f"{'option':<28} {'it/s':>6} {'s/it (median)':>14} {'vs fp32':>8}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:<28} {1 / med:>6.2f} {med:>14.3f} {base / med:>7.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "batch": args.batch, "patch": args.patch, "seconds": times}, f, indent=1)
    if args.choose:
        plain = [k for k in times if not any(options[k][2:])]  # the trainer's options: no dense, no compile
        best = min(plain, key=lambda k: statistics.median(times[k]))
        cl, bf16 = options[best][:2]
        print(f"{'bf16' if bf16 else 'fp32'} {str(cl).lower()}")
        return

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
