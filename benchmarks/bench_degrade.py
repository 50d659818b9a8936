"""What the random degradation (data.degrade) costs per training step, side by side.

    python benchmarks/bench_degrade.py --repeats 5 --json benchmarks/results/degrade-<cpu>.json

For each scale: the time to cut one batch (16 patches of 48 px LR) without and with the
degradation, and one training step of the real recipe (forward, L1 + FFT + the routers'
balance term, backward, Adam; batch 16 in micro-batches of 2, channels_last, fp32, the
recipe's threads), interleaved. The degradation's share is its added batch time over the
step with it. Pause other jobs while it runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from seemore_sr import create_model
from seemore_sr.bench import cpu_description
from seemore_sr.data.degrade_config import DegradeConfig
from seemore_sr.data.paired import PairedImages
from seemore_sr.models.seemore import Router
from seemore_sr.training.trainer import balance_loss, sr_loss


def _stepper(scale: int):
    """One training step of the real recipe's shape on a fresh x``scale`` model: ``step(lr, hr)``."""
    model = create_model(f"seemore-tiny-x{scale}").train().to(memory_format=torch.channels_last)
    gates: list = []
    for m in model.modules():
        if isinstance(m, Router):
            m.register_forward_hook(lambda _m, _i, out: gates.append(out))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(lr: torch.Tensor, hr: torch.Tensor) -> None:
        opt.zero_grad()
        for i in range(0, 16, 2):
            sr = model(lr[i : i + 2].contiguous(memory_format=torch.channels_last))
            loss = sr_loss(sr, hr[i : i + 2]) + 0.02 * balance_loss(gates)
            gates.clear()
            (loss / 8).backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the real recipe's: 1)")
    p.add_argument("--data", default="../shared/data/train/T91")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for scale in (2, 4):
        clean = PairedImages([args.data], scale, 48, seed=0, skip_small=True)
        real = PairedImages([args.data], scale, 48, seed=0, skip_small=True, degrade=DegradeConfig(enabled=True))
        step = _stepper(scale)
        times: dict[str, list[float]] = {"batch_clean": [], "batch_degraded": [], "step": []}
        step(*clean.batch(0, 16))  # warm up
        for r in range(args.repeats):
            for name, data in (("batch_clean", clean), ("batch_degraded", real)):
                t = time.perf_counter()
                for it in range(8):
                    data.batch(1000 * r + it, 16)
                times[name].append((time.perf_counter() - t) / 8)
            lr, hr = real.batch(r, 16)
            t = time.perf_counter()
            step(lr, hr)
            times["step"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        added = med["batch_degraded"] - med["batch_clean"]
        rows[f"x{scale}"] = {
            **{f"{k}_ms": round(v * 1e3, 2) for k, v in med.items()},
            "degrade_share_of_step": round(added / (med["step"] + med["batch_degraded"]), 4),
        }
        print(
            f"x{scale}: batch {med['batch_clean'] * 1e3:.1f} ms clean, {med['batch_degraded'] * 1e3:.1f} ms degraded; "
            f"step {med['step'] * 1e3:.0f} ms; the degradation adds {added * 1e3:.1f} ms, "
            f"{100 * rows[f'x{scale}']['degrade_share_of_step']:.1f}% of a step",
            flush=True,
        )
    out = {"cpu": cpu_description(), "threads": args.threads, "repeats": args.repeats, "rows": rows,
           "numpy": np.__version__, "torch": torch.__version__}  # fmt: skip
    print(f"{out['cpu']}, {args.threads} thread(s), median of {args.repeats}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
