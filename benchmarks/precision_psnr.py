"""PSNR change of reduced precision on Set5 (Y, crop = scale) with trained weights.

    python benchmarks/precision_psnr.py seemore-tiny-x4 --scale 4

Runs the same evaluation in fp32 and in each reduced precision the device supports
(bf16 on CPU and GPU, fp16 on GPU) and prints the difference.
"""

from __future__ import annotations

import argparse

import torch

from seemore_sr.bench import cpu_description
from seemore_sr.evaluation.evaluate import evaluate
from seemore_sr.inference.upscaler import Upscaler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--data", default="../shared/data/benchmark/Set5")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    precisions = ["fp32", "bf16"] + (["fp16"] if args.device.startswith("cuda") else [])
    base = None
    print(f"{args.model} x{args.scale} on {args.data} ({args.device}, torch {torch.__version__})")
    print(f"# {cpu_description()}")
    for prec in precisions:
        up = Upscaler(args.model, device=args.device, precision=prec, tile=0, force_precision=True)
        (res,) = evaluate(up, [args.data], args.scale, progress=False)
        s = res.summary()
        base = s["psnr"] if base is None else base
        print(f"{prec:<5} PSNR {s['psnr']:.4f} dB  SSIM {s['ssim']:.5f}  change {s['psnr'] - base:+.4f} dB")


if __name__ == "__main__":
    main()
