"""The border rim: how far flat colours drift near the image border.

    python scripts/border_rim.py [--weights FILES...] [--mirror 0 auto 4] [--size 48] [--band 12] [--json F]

A flat LR image of one colour is upscaled by the bundled weights (or the given files) at
each scale; a perfect upscaler returns the same flat colour. Reported per scale, as the
worst over the colours, in 8-bit levels: ``border`` = the largest |output - colour| within
``band`` output pixels of the edge, ``interior`` = the largest further in. The colours:
six saturated (the primaries and secondaries), four neutrals (black, white, two greys)
and two mid-saturation tones; fp32, the CPU's ``optimize`` path, no tiling. Each weight
file is measured with each ``--mirror`` (input pixels mirrored around the image before
the network runs: "auto" = 4 on the flat sides, the upscaler's default; 0 = the network
on the image alone, what training changes; default: both).

Target: border <= 16 and interior <= 4 levels at every scale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "dark grey": (48, 48, 48),
    "orange": (230, 120, 40),
    "teal": (40, 140, 150),
}


def rim(upscaler, size: int, band: int) -> dict:
    """Per colour: (border, interior) drift in levels, for one upscaler."""
    out = {}
    for name, rgb in COLOURS.items():
        lr = np.empty((size, size, 3), np.uint8)
        lr[:] = rgb
        up = upscaler(lr).astype(np.int16)
        diff = np.abs(up - np.array(rgb, np.int16)).max(-1)
        inner = diff[band:-band, band:-band]
        edge = diff.copy()
        edge[band:-band, band:-band] = 0
        out[name] = (int(edge.max()), int(inner.max()))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="*", help="weight files (default: the bundled x2, x3, x4)")
    p.add_argument("--size", type=int, default=48, help="LR side in pixels (default 48)")
    p.add_argument("--band", type=int, default=12, help="border band in output pixels (default 12)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument(
        "--mirror", nargs="+", default=["0", "auto"], help="auto, or pixels mirrored on every side (default: 0 auto)"
    )
    args = p.parse_args()
    from seemore_sr import Upscaler
    from seemore_sr.bench import cpu_description

    models = args.weights or [f"seemore-tiny-x{s}" for s in (2, 3, 4)]
    rows = {}
    for m in models:
        for mirror in (v if v == "auto" else int(v) for v in args.mirror):
            up = Upscaler(m, device="cpu", tile=0, progress=False, mirror=mirror)
            per = rim(up, args.size, args.band)
            rows[f"{m} mirror {mirror}"] = {
                "weights": str(m),
                "mirror": mirror,
                "scale": up.scale,
                "border": max(b for b, _ in per.values()),
                "interior": max(i for _, i in per.values()),
                "colours": per,
            }
    print(f"# {cpu_description()}; flat {args.size}x{args.size} LR, band {args.band} output px; levels (0..255)")
    print(f"{'weights':<28} {'mirror':>6} {'border':>6} {'interior':>8}   worst border colour")
    for r in rows.values():
        worst = max(r["colours"], key=lambda c: r["colours"][c][0])
        print(f"{Path(r['weights']).name:<28} {r['mirror']:>6} {r['border']:>6} {r['interior']:>8}   {worst}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "band": args.band, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
