"""Levers for CPU inference speed at the kernel level, measured side by side on this CPU.

    python benchmarks/bench_levers.py [--repeats 15] [--out benchmarks/results/levers-NAME]

``optimize``'s forward at 720p output (tiny x4) is a chain of ~300 kernels over a
57,600-pixel x 36-channel NHWC map. Each row below times one way of doing one of those
kernels against the way ``optimize`` does it now, interleaved in rounds (median), and
gives its max difference from the fp32 result:

- the 1x1 convs (90 per image): oneDNN's GEMM with its bias and post-op fused (ours)
  against MKL's plain ``mm`` (no bias), a bias added by ``addmm``, the residual added
  in place by ``addmm_``, a channels_last 1x1 conv, oneDNN's GEMM with its weight
  prepacked (as inductor's freezing does) and the GEMM the other way round on an NCHW
  map (``W @ X``, the pixels along the vectors); the same GEMM writing 48 channels (12
  of them zero: more work) or 32, probes of how 36-channel rows fit the vector width;
  and a copy of the map, the floor that memory traffic sets;
- the sibling pairs (24 per image: fn_1's and to_qv's two halves, RME's ``x`` / ``k``):
  two 36-channel GEMMs (ours) against one 72-channel GEMM, its halves left as strided
  views or copied out (the depthwise convs that read them want contiguous maps);
- their exact GELU (60 per image): fused into the GEMM (ours) against a separate pass;
- LayerNorm (25 per image): the composed passes (ours) against torch's ``layer_norm``
  and ``rms_norm`` of the centred map; and fused into the GEMM after it (18 of the 25):
  the centring folded into the weights (``W (x - mean) = (W - W 1 1^T / C) x``), so only
  ``x / std`` is left to compute, its statistics by the composed passes or ``var_mean``;
- oneDNN's fp32 "bf16 math mode" (``torch.backends.mkldnn.*.fp32_precision``), which
  runs an fp32 GEMM / conv on the CPU's bf16 units;
- the dense 3x3 conv (7 per image) in bf16, and as "bf16x3" (x = xh + xl, w = wh + wl
  split into bf16 parts, three products in one conv of 108 input channels), the usual way
  to get fp32 accuracy out of bf16 units (PyTorch's bf16 conv writes bf16, which caps it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from seemore_sr.bench import cpu_description, interleaved
from seemore_sr.inference.nhwc import DNN, NHWCOps, _nchw

_layer_norm = NHWCOps().norm

H, W, C = 180, 320, 36  # tiny x4's features at 720p output


def _bf16_parts(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hi = t.bfloat16().float()
    return hi, t - hi


class _MathMode:
    """oneDNN's fp32 math mode for GEMMs and convs, set for one call and restored."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __enter__(self) -> None:
        mk = torch.backends.mkldnn
        self.old = mk.matmul.fp32_precision, mk.conv.fp32_precision
        mk.matmul.fp32_precision = mk.conv.fp32_precision = self.mode

    def __exit__(self, *exc) -> None:
        mk = torch.backends.mkldnn
        mk.matmul.fp32_precision, mk.conv.fp32_precision = self.old


def kernels() -> dict[str, dict[str, tuple]]:
    """Per kernel: ``{way: (fn, ours)}``; ``ours`` is True for the way ``optimize`` uses,
    None for a way that computes something else (a floor or a probe: no difference is
    reported for it). A way may return a tuple of maps (compared concatenated)."""
    torch.manual_seed(0)
    x = torch.randn(1, H, W, C)
    res = torch.randn(1, H, W, C)
    w, b = torch.randn(C, C) * 0.2, torch.randn(C) * 0.1
    wt, x2 = w.t().contiguous(), x.view(-1, C)
    w4 = w[:, :, None, None].contiguous()
    xt, dst = x2.t().contiguous(), torch.empty_like(x)  # the map in NCHW order; a copy's target
    lnw, lnb = torch.randn(C), torch.randn(C)
    w3 = torch.randn(C, C, 3, 3) * 0.05
    xcl = _nchw(x)  # channels_last NCHW view of the NHWC map
    lin = torch.ops.mkldnn._linear_pointwise
    w48, b48 = torch.cat([w, w.new_zeros(48 - C, C)]), torch.cat([b, b.new_zeros(48 - C)])
    wp, bp = torch.randn(2 * C, C) * 0.2, torch.randn(2 * C) * 0.1  # a sibling pair, stacked
    GELU = ("gelu", [], "none")

    def halves(y):
        return y[..., :C], y[..., C:]

    def in_mode(fn):
        def run():
            with _MathMode("bf16"):
                return fn()

        return run

    def addmm_res():
        r = res.add(b)  # the bias folded into the residual first
        return r.view(-1, C).addmm_(x2, wt).view(1, H, W, C)

    def conv_split():  # bf16x3: xh*wh + xh*wl + xl*wh in one conv
        xh, xl = _bf16_parts(xcl)
        wh, wl = _bf16_parts(w3)
        xs = torch.cat([xh, xh, xl], 1).bfloat16()
        ws = torch.cat([wh, wl, wh], 1).bfloat16()
        return F.conv2d(xs, ws, None, padding=1).float() + b.view(1, -1, 1, 1)

    gemm = {
        "oneDNN GEMM + bias (ours)": (lambda: lin(x, w, b, "none", [], ""), True),
        "MKL mm, no bias (not the same result)": (lambda: torch.mm(x2, wt).view(1, H, W, C), None),
        "MKL addmm (bias)": (lambda: torch.addmm(b, x2, wt).view(1, H, W, C), False),
        "1x1 conv, channels_last": (lambda: F.conv2d(xcl, w4, b).permute(0, 2, 3, 1), False),
        "oneDNN GEMM, bf16 math mode": (in_mode(lambda: lin(x, w, b, "none", [], "")), False),
        "oneDNN GEMM to 48 channels (12 zero)": (lambda: lin(x, w48, b48, "none", [], ""), None),
        "oneDNN GEMM to 32 channels (a probe)": (lambda: lin(x, w[:32], b[:32], "none", [], ""), None),
        "NCHW map: W @ X, MKL addmm (bias)": (lambda: torch.addmm(b[:, None], w, xt).t().view(1, H, W, C), False),
        "a copy of the map (the memory floor)": (lambda: dst.copy_(x), None),
    }
    if hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):  # what inductor's freezing does
        packed = torch.ops.mkldnn._reorder_linear_weight(w, H * W)
        gemm["oneDNN GEMM, weight prepacked"] = (lambda: lin(x, packed, b, "none", [], ""), False)

    def stacked():
        return halves(lin(x, wp, bp, *GELU))

    def two():
        return lin(x, wp[:C], bp[:C], *GELU), lin(x, wp[C:], bp[C:], *GELU)

    pair = {
        "two GEMMs 36->36 + GELU (ours)": (two, True),
        "one GEMM 36->72 + GELU, halves as views": (stacked, False),
        "... halves copied out contiguous": (lambda: tuple(h.contiguous() for h in stacked()), False),
    }
    gemm_add = {
        "oneDNN GEMM + add fused (ours)": (lambda: lin.binary(x, res, w, b, "add"), True),
        "bias into residual, addmm_ in place": (addmm_res, False),
    }
    gemm_gelu = {
        "oneDNN GEMM + GELU fused (ours)": (lambda: lin(x, w, b, "gelu", [], "none"), True),
        "oneDNN GEMM, then GELU pass": (lambda: F.gelu(lin(x, w, b, "none", [], "")), False),
        "oneDNN GEMM + GELU, bf16 math mode": (in_mode(lambda: lin(x, w, b, "gelu", [], "none")), False),
    }
    norm = {
        "composed passes (ours)": (lambda: _layer_norm(x, lnw, lnb), True),
        "torch layer_norm": (lambda: F.layer_norm(x, (C,), lnw, lnb, 1e-6), False),
        "rms_norm of the centred map": (
            lambda: F.rms_norm(x - x.mean(-1, keepdim=True), (C,), lnw, 1e-6).add_(lnb),
            False,
        ),
    }
    w2, b2 = torch.randn(2 * C, C) * 0.2, torch.randn(2 * C) * 0.1  # an FFN's fn_1 (C -> 2C), affine folded
    w2c = w2 - w2.sum(1, keepdim=True) / C  # W (x - mean) = (W - W 1 1^T / C) x: the centring in the weights

    def scaled_by_std(x_mean_var):  # x / std per pixel: what is left of the norm once the GEMM centres
        _, var = x_mean_var
        return lin(x * var.add_(1e-6).rsqrt_(), w2c, b2, "gelu", [], "none")

    def centred_stats():
        xc = x - x.mean(-1, keepdim=True)
        return None, torch.linalg.vector_norm(xc, dim=-1, keepdim=True).square_().div_(C)

    norm_gemm = {
        "norm passes, then GEMM + GELU (ours)": (lambda: lin(_layer_norm(x), w2, b2, "gelu", [], "none"), True),
        "centring folded into the GEMM": (lambda: scaled_by_std(centred_stats()), False),
        "... with var_mean's one-pass statistics": (
            lambda: scaled_by_std(torch.var_mean(x, -1, correction=0, keepdim=True)[::-1]),
            False,
        ),
    }
    conv = {
        "fp32 3x3 conv + GELU (ours)": (
            lambda: torch.ops.mkldnn._convolution_pointwise(xcl, w3, b, [1, 1], [1, 1], [1, 1], 1, "gelu", [], "none"),
            True,
        ),
        "fp32 3x3 conv, bf16 math mode": (in_mode(lambda: F.gelu(F.conv2d(xcl, w3, b, padding=1))), False),
        "bf16 3x3 conv (inputs cast)": (
            lambda: F.gelu(F.conv2d(xcl.bfloat16(), w3.bfloat16(), b.bfloat16(), padding=1).float()),
            False,
        ),
        "bf16x3 3x3 conv (108 channels, bf16 out)": (lambda: F.gelu(conv_split()), False),
    }
    return {
        "1x1 conv (GEMM 57600x36x36)": gemm,
        "1x1 conv + residual add": gemm_add,
        "a sibling pair of 1x1 convs + GELU (36 -> 2 x 36)": pair,
        "1x1 conv + exact GELU": gemm_gelu,
        "LayerNorm with affine": norm,
        "LayerNorm into the next GEMM (C->2C, GELU)": norm_gemm,
        "3x3 conv 36->36 + GELU": conv,
    }


def _joined(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat(out, -1) if isinstance(out, tuple) else out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", type=Path, default=None, help="write OUT.txt and OUT.json")
    args = p.parse_args()
    if not DNN:
        raise SystemExit("this PyTorch has no oneDNN (mkldnn) build; these levers are oneDNN's")
    rows, lines = [], []
    lines.append(f"# machine: {cpu_description()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    lines.append(
        f"# {W}x{H} map, {C} channels (tiny x4 at 720p output); "
        f"{args.repeats} interleaved rounds, balanced order, median"
    )
    with torch.no_grad():
        for kernel, ways in kernels().items():
            mine = next(name for name, (_, ours) in ways.items() if ours)
            ref = _joined(ways[mine][0]())
            diffs = {
                name: None if ours is None else (_joined(fn()).float() - ref).abs().max().item()
                for name, (fn, ours) in ways.items()
            }
            times: dict[str, list[float]] = {name: [] for name in ways}
            for fn, _ in ways.values():  # warm-up
                fn()
            for name in interleaved(ways, args.repeats):
                t = time.perf_counter()
                ways[name][0]()
                times[name].append(time.perf_counter() - t)
            base = statistics.median(times[mine])
            lines.append(f"\n{kernel}")
            lines.append(f"  {'way':<40} {'ms':>7} {'vs ours':>8} {'max |diff|':>11}")
            for name in ways:
                med = statistics.median(times[name])
                diff = "-" if diffs[name] is None else f"{diffs[name]:.1e}"
                lines.append(f"  {name:<40} {1e3 * med:7.2f} {base / med:7.2f}x {diff:>11}")
                rows.append(
                    {"kernel": kernel, "way": name, "ms": 1e3 * med, "speedup": base / med, "max_diff": diffs[name]}
                )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".txt").write_text(text + "\n")
        meta = {"machine": cpu_description(), "torch": torch.__version__, "repeats": args.repeats}
        args.out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
