"""The README's picture: a degraded benchmark crop, upscaled by bicubic, the clean weights
and the real-photo weights, beside the original; each labelled with its PSNR-Y on the crop.

    python scripts/real_figure.py --out docs/real-photos.png
    python scripts/real_figure.py --real campaign/runs/real-x2/latest.safetensors   # before a ship

The LR is made as ``seemore eval --degrade PRESET`` makes it (default ``noise10`` at x2:
MATLAB bicubic, then Gaussian noise of sigma 10), seeded by the file's name. Remade by
``scripts/real_ship.sh`` after a ship.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seemore_sr import load_model  # noqa: E402
from seemore_sr.data.degrade import degrade_lr  # noqa: E402
from seemore_sr.data.imresize import imresize  # noqa: E402
from seemore_sr.evaluation.metrics import psnr  # noqa: E402
from seemore_sr.inference.upscaler import Upscaler  # noqa: E402


def figure(image: Path, box: tuple[int, int, int, int], scale: int, preset: str, real: str, zoom: int) -> Image.Image:
    hr = np.asarray(Image.open(image).convert("RGB"))
    hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
    lr = degrade_lr(imresize(hr, 1 / scale), hr, scale, preset, image.name)
    x0, y0, x1, y1 = box
    panels = [("degraded input (nearest)", np.repeat(np.repeat(lr, scale, 0), scale, 1))]
    panels.append(("bicubic", imresize(lr, float(scale))))
    panels.append(("clean weights", Upscaler(load_model(f"seemore-tiny-x{scale}"), mirror=0)(lr)))
    panels.append(("real-photo weights", Upscaler(load_model(real), mirror=0)(lr)))
    panels.append(("original", hr))
    tiles = []
    for label, img in panels:
        crop = img[y0:y1, x0:x1]
        score = f" {psnr(crop, hr[y0:y1, x0:x1], 0):.1f} dB" if label not in ("original",) else ""
        tile = Image.fromarray(crop).resize(((x1 - x0) * zoom, (y1 - y0) * zoom), Image.NEAREST)
        canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
        canvas.paste(tile, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), label + score, fill="black")
        tiles.append(canvas)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 4
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=ROOT.parent / "shared/data/benchmark/B100/HR/108005.png")
    p.add_argument("--box", type=int, nargs=4, default=[170, 60, 290, 180], metavar=("X0", "Y0", "X1", "Y1"))
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--preset", default="noise10")
    p.add_argument("--real", default="seemore-tiny-x2-real", help="the real weights (a name or a file)")
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "real-photos.png")
    a = p.parse_args()
    figure(a.image, tuple(a.box), a.scale, a.preset, a.real, a.zoom).save(a.out, optimize=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
