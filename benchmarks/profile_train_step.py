"""Where one training step's time goes: data, forward, loss (pixel / FFT), backward, Adam, EMA.

    python benchmarks/profile_train_step.py --scales 2 4 --repeats 5 [--ops 12]

SeemoRe-T, train mode, the campaign's batch (16 x 48px LR patches from the training set),
fp32, torch's threads, NCHW or channels_last (``--channels-last``, as the campaign
trains). Phases are timed with ``time.perf_counter`` around each part of the trainer's
step; the median over ``--repeats`` steps (after one warm-up) is printed,
then (``--ops``) the profiler's top operators by self CPU time over two more steps.
Pause the campaign first (``scripts/campaign.sh pause``): the numbers need a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from seemore_sr import create_model
from seemore_sr.bench import cpu_description
from seemore_sr.data.paired import PairedImages


def step(model, opt, ema, data, it, batch, phases, channels_last=False):
    t = time.perf_counter
    t0 = t()
    lr, hr = data.batch(it, batch)
    if channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    t1 = t()
    sr = model(lr)
    t2 = t()
    pixel = F.l1_loss(sr, hr)
    t3 = t()
    a, b = torch.fft.rfft2(sr.float()), torch.fft.rfft2(hr)
    loss = pixel + 0.1 * F.l1_loss(torch.view_as_real(a), torch.view_as_real(b))
    t4 = t()
    opt.zero_grad(set_to_none=False)
    loss.backward()
    t5 = t()
    opt.step()
    t6 = t()
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1e-3)
    t7 = t()
    for name, dt in zip(
        ("data", "forward", "loss: L1", "loss: FFT", "backward", "Adam", "EMA"),
        (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6),
        strict=True,
    ):
        phases.setdefault(name, []).append(dt)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--data", default="../shared/data/train/T91")
    p.add_argument("--ops", type=int, default=0, help="also list the profiler's top N ops")
    p.add_argument("--channels-last", action="store_true", help="model and input channels_last (the campaign's)")
    args = p.parse_args()
    print(f"# {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for s in args.scales:
        torch.manual_seed(0)
        model = create_model(f"seemore-tiny-x{s}").train()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        ema = create_model(f"seemore-tiny-x{s}")
        opt = torch.optim.Adam(model.parameters(), 1e-3, betas=(0.9, 0.99))
        data = PairedImages([args.data], s, args.patch, skip_small=True)
        phases: dict[str, list[float]] = {}
        cl = args.channels_last
        step(model, opt, ema, data, 0, args.batch, {}, cl)
        for i in range(args.repeats):
            step(model, opt, ema, data, i + 1, args.batch, phases, cl)
        med = {k: statistics.median(v) for k, v in phases.items()}
        total = sum(med.values())
        layout = "channels_last" if cl else "NCHW"
        shape = f"batch {args.batch} x {args.patch}px LR"
        print(f"\nx{s} ({layout}): {shape}, median of {args.repeats} steps: {total:.3f} s/step")
        for k, v in med.items():
            print(f"  {k:<10} {v * 1e3:8.1f} ms  {100 * v / total:5.1f} %")
        if args.ops:
            with torch.profiler.profile() as prof:
                for i in range(2):
                    step(model, opt, ema, data, 100 + i, args.batch, {}, cl)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
