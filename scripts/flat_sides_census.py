"""Which benchmark LR images ``--mirror auto`` touches: those with a flat side.

    python scripts/flat_sides_census.py [--data DIR...] [--scales 2 3 4]

For each scale, each dataset's HR image is downscaled as ``seemore eval`` does (the
MATLAB-made LR where the folder has one) and :func:`~seemore_sr.inference.engine.flat_sides`
is asked which of its sides are flat, with the depth the engine uses. An image with no
flat side is upscaled exactly as with ``--mirror 0``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from seemore_sr.data.images import read_image
from seemore_sr.evaluation.evaluate import lr_for
from seemore_sr.inference import MIRROR_GRAPHICS
from seemore_sr.inference.engine import flat_sides

BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmark"
SIDES = ("top", "bottom", "left", "right")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=[str(BENCH / d) for d in ("Set5", "Set14", "B100")])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    args = p.parse_args()
    touched: set[str] = set()
    total = 0
    for folder in map(Path, args.data):
        files = sorted((folder / "HR").glob("*.png"))
        total += len(files)
        for path in files:
            hr = read_image(path)
            for s in args.scales:
                h, w = hr.shape[0] // s * s, hr.shape[1] // s * s
                lr_path = folder / "LR_bicubic" / f"X{s}" / path.name
                lr = lr_for(np.ascontiguousarray(hr[:h, :w]), s, lr_path if lr_path.exists() else None)
                rgb = np.repeat(lr[..., None], 3, 2) if lr.ndim == 2 else lr[..., :3]  # gray: as the upscaler
                x = torch.from_numpy(np.array(rgb, np.float32)).permute(2, 0, 1)[None] / 255
                flat = flat_sides(x, min(MIRROR_GRAPHICS, *x.shape[-2:]))
                if any(flat):
                    touched.add(f"{folder.name}/{path.name}")
                    names = ", ".join(n for n, f in zip(SIDES, flat, strict=True) if f)
                    print(f"x{s} {folder.name}/{path.name}: flat {names}")
    print(f"{len(touched)} of {total} images have a flat side at one scale or more: {', '.join(sorted(touched))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
