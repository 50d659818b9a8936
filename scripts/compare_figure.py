"""Visual comparison: bicubic / SeemoRe-T (bundled) / HR crops side by side, one row per scale.

python scripts/compare_figure.py --out docs/comparison.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from seemore_sr import bundled_weights
from seemore_sr.data.imresize import imresize
from seemore_sr.evaluation.metrics import psnr
from seemore_sr.inference.upscaler import Upscaler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image", default="../shared/data/benchmark/Set14/HR/comic.png")
    p.add_argument("--box", type=int, nargs=4, default=[60, 40, 160, 140], metavar=("X0", "Y0", "X1", "Y1"))
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("--out", default="docs/comparison.png")
    args = p.parse_args()
    hr_full = np.asarray(Image.open(args.image).convert("RGB"))
    rows = []
    for s in (2, 3, 4):
        name = f"seemore-tiny-x{s}"
        if name not in bundled_weights():
            continue
        h, w = hr_full.shape[0] // s * s, hr_full.shape[1] // s * s
        hr = hr_full[:h, :w]
        lr = imresize(hr, 1 / s)
        bic = imresize(lr, float(s))
        ours = Upscaler(name, device="cpu")(lr)
        x0, y0, x1, y1 = args.box
        tiles = []
        for label, img in (("bicubic", bic), ("SeemoRe-T (ours)", ours), ("HR", hr)):
            crop = Image.fromarray(img[y0:y1, x0:x1]).resize(
                ((x1 - x0) * args.zoom, (y1 - y0) * args.zoom), Image.NEAREST
            )
            score = "" if label == "HR" else f" {psnr(img, hr, s):.2f} dB"
            ImageDraw.Draw(crop).text((6, 6), f"x{s} {label}{score}", fill=(255, 255, 0))
            tiles.append(crop)
        rows.append(tiles)
    if not rows:
        raise SystemExit("no bundled weights yet")
    tw, th = rows[0][0].size
    sheet = Image.new("RGB", (3 * tw + 8, len(rows) * (th + 4)), "white")
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * (tw + 4), r * (th + 4)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
