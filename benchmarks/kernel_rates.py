"""How close SeemoRe-T x4's big kernels run to this CPU's peak (fp32, oneDNN / MKL).

    python benchmarks/kernel_rates.py            # 720p output: 320x180 input, 36 channels

Times, in isolation (median of ``--repeats`` after warm-ups), the two kinds of work that
dominate ``optimize``'s forward at this size: a 1x1 conv as an NHWC GEMM (57,600 x 36 x
36, run 72 times per image, 48 of them with a fused GELU) and a dense 36 -> 36 3x3 conv
on channels_last data (7 per image, plus the tail's 36 -> 48), against a large square SGEMM as the machine's
practical peak. With its counts, it gives the floor those kernels alone put under
``optimize``'s latency. It also times the two choices ``optimize`` makes against what
PyTorch offers: torch's ``layer_norm`` against the composed one, and oneDNN's fused
depthwise-conv x mul against the conv followed by an in-place multiply.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

from seemore_sr.bench import cpu_description, time_call
from seemore_sr.inference.nhwc import DNN, NHWCOps

_OPS = NHWCOps()

CPU = torch.device("cpu")


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    return 1e3 * statistics.median(time_call(fn, CPU) for _ in range(repeats))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    h, w, c = args.height, args.width, args.channels
    pixels = h * w
    x = torch.randn(1, h, w, c, generator=g) * 0.5  # NHWC features of a typical scale
    wt, b = torch.randn(c, c, generator=g) * 0.2, torch.randn(c, generator=g) * 0.1
    k3 = torch.randn(c, c, 3, 3, generator=g) * 0.05
    big = torch.randn(4096, 4096, generator=g)

    rows = []
    with torch.no_grad():
        peak_ms = median_ms(lambda: big @ big, max(3, args.repeats // 5))
        peak = 2 * 4096**3 / peak_ms / 1e6
        rows.append(("SGEMM 4096^3 (peak reference)", peak_ms, peak, None))
        flops = 2 * pixels * c * c
        rows.append(("1x1 conv as GEMM", median_ms(lambda: _OPS.linear(x, wt, b), args.repeats), None, flops))
        gelu_ms = median_ms(lambda: _OPS.linear(x, wt, b, gelu=True), args.repeats)
        rows.append(("1x1 conv as GEMM + GELU", gelu_ms, None, flops))
        xc = x.permute(0, 3, 1, 2)  # channels_last view
        rows.append(
            ("3x3 conv 36->36", median_ms(lambda: F.conv2d(xc, k3, b, padding=1), args.repeats), None, 9 * flops)
        )
        ln_w, ln_b = torch.ones(c), torch.zeros(c)
        other = [
            ("layer_norm (torch)", median_ms(lambda: F.layer_norm(x, (c,), None, None, 1e-6), args.repeats)),
            ("layer_norm (torch, affine)", median_ms(lambda: F.layer_norm(x, (c,), ln_w, ln_b, 1e-6), args.repeats)),
            ("layer_norm (optimize's)", median_ms(lambda: _OPS.norm(x), args.repeats)),
        ]
        dw = nn.Conv2d(c, c, 3, padding=1, groups=c).requires_grad_(False)
        v = torch.randn(x.shape, generator=g)
        if DNN:
            args_ = (dw.weight, dw.bias, dw.padding, dw.stride, dw.dilation, dw.groups)
            fused = torch.ops.mkldnn._convolution_pointwise.binary
            other.append(
                (
                    "dw 3x3 conv * v, oneDNN fused",
                    median_ms(
                        lambda: fused(xc, v.permute(0, 3, 1, 2), *args_, "mul", None, None, [], None), args.repeats
                    ),
                )
            )
        other.append(("dw 3x3 conv, then mul_ (optimize)", median_ms(lambda: _OPS.conv(x, dw, mul=v), args.repeats)))
    print(f"# {cpu_description()}")
    print(f"# {pixels} pixels x {c} channels, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'kernel':<34} {'ms':>8} {'GFLOP/s':>9} {'of peak':>8}")
    for name, ms, rate, fl in rows:
        rate = rate if rate is not None else fl / ms / 1e6
        print(f"{name:<34} {ms:>8.2f} {rate:>9.1f} {100 * rate / peak:>7.0f}%")
    gemm_ms, gelu_ms, conv_ms = rows[1][1], rows[2][1], rows[3][1]
    floor = 24 * gemm_ms + 48 * gelu_ms + (7 + 48 / 36) * conv_ms  # the tail's 36 -> 48 conv: 4/3 of one
    for name, ms in other:
        print(f"{name:<34} {ms:>8.2f} {'-':>9} {'-':>8}")
    print(f"# floor from these kernels alone (24 GEMMs, 48 GEMM+GELU, 3x3 convs 7x 36->36 + 36->48): {floor:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
