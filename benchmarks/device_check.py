"""Checks and measurements that need a GPU, in one short run (``scripts/device_check.sh``).

    python benchmarks/device_check.py --device cuda --set5 ../shared/data/benchmark/Set5 \\
        --golden ../shared/reference/golden

1. golden vectors on the device: the authors' outputs reproduced (eval, whole batch),
   with cuDNN's TF32 convolutions off (our fp32 setting) and on (PyTorch's default);
2. PSNR change on Set5 of bf16 and fp16 with the bundled weights, and whether fp16
   overflows (non-finite outputs);
3. a 4000x3000 photo-sized input upscaled x4 with ``Upscaler``: untiled and tiled,
   time and peak device memory, and the tiled/untiled difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from seemore_sr import load_model
from seemore_sr.evaluation.evaluate import evaluate
from seemore_sr.inference.fast import optimize
from seemore_sr.inference.upscaler import Upscaler


def golden(path: Path, device: torch.device) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        x, ref = f.get_tensor("input").to(device), f.get_tensor("output_eval").to(device)
    model = load_model(path).to(device).eval()
    out = {}
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        with torch.no_grad():
            fast = optimize(model)
            fast(x), fast(x)  # eager, then captured
            x2 = x.flip(-1)  # new data through the same graph
            out[f"tf32={tf32}"] = {
                "eager": (model(x) - ref).abs().max().item(),
                "optimize": (fast(x) - ref).abs().max().item(),
                "optimize_new_data": (fast(x2) - model(x2)).abs().max().item(),
                "graphs": len(getattr(fast, "_graphs", ())),
            }
    torch.backends.cudnn.allow_tf32 = False
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--set5", required=True)
    p.add_argument("--golden", required=True)
    p.add_argument("--big", default="4000x3000")
    p.add_argument("--json")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    res: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    res["torch"] = torch.__version__
    print(res, flush=True)

    res["golden"] = {f.name: golden(f, device) for f in sorted(Path(args.golden).glob("*.safetensors"))}
    for name, r in res["golden"].items():
        print(f"golden {name}: {r}", flush=True)

    res["precision"] = {}
    for scale in (2, 3, 4):
        row = {}
        precs = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
        for prec in precs:
            up = Upscaler(f"seemore-tiny-x{scale}", device=device, precision=prec, tile=0)
            outs = []
            orig = up.fast

            def watch(x, orig=orig, outs=outs):
                y = orig(x)
                outs.append(bool(torch.isfinite(y).all()))
                return y

            up.fast = watch
            (r,) = evaluate(up, [args.set5], scale, progress=False)
            s = r.summary()
            row[prec] = {"psnr": s["psnr"], "ssim": s["ssim"], "all_finite": all(outs)}
        for prec in precs[1:]:
            row[prec]["change_db"] = row[prec]["psnr"] - row["fp32"]["psnr"]
        res["precision"][f"x{scale}"] = row
        print(f"Set5 x{scale}: {json.dumps(row)}", flush=True)

    w, h = map(int, args.big.split("x"))
    torch.manual_seed(0)
    # a smooth, photo-like input (random noise is the worst case for nothing in particular)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, h // 16, w // 16), size=(h, w), mode="bilinear")
    big = {}
    outs = {}
    for tile in (0, 512):
        up = Upscaler("seemore-tiny-x4", device=device, tile=tile)
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        try:
            y = up.run(x)
        except torch.OutOfMemoryError as e:
            big[f"tile={tile}"] = {"error": str(e).splitlines()[0]}
            continue
        if cuda:
            torch.cuda.synchronize(device)
        big[f"tile={tile}"] = {
            "seconds": time.perf_counter() - t,
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        }
        outs[tile] = y
        print(f"{w}x{h} x4 tile={tile}: {big[f'tile={tile}']}", flush=True)
    if len(outs) == 2:
        a, b = outs[0], outs[512]
        big["tiled_vs_untiled_max_abs"] = (a - b).abs().max().item()
        qa, qb = (a * 255).round(), (b * 255).round()
        mse = ((qa - qb) / 255).double().pow(2).mean().item()
        big["tiled_vs_untiled_psnr_8bit"] = float("inf") if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()
        big["tiled_vs_untiled_max_8bit"] = (qa - qb).abs().max().item()
    # the 8-bit path: numpy in, output tiles quantised straight into the result array
    arr = (x[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
    up = Upscaler("seemore-tiny-x4", device=device, tile=512)
    t = time.perf_counter()
    out8 = up(arr)
    big["uint8_streamed_seconds"] = time.perf_counter() - t
    ref8 = Upscaler("seemore-tiny-x4", device=device, tile=0)(arr)
    big["uint8_streamed_vs_whole_max_levels"] = int(abs(out8.astype("int16") - ref8).max())
    res["big"] = big
    print(f"big: {big}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
