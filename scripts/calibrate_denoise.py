"""Place the ramps of the denoise strength ``auto`` (inference/denoise.py) where the PSNR says.

On training photos (never benchmark images), each image's MATLAB-bicubic LR is degraded at
a random level (JPEG only, noise only, or blur + noise + JPEG), upscaled by the clean and
``-real`` weights blended at every strength 0, 0.1, ..., 1, and scored (PSNR-Y against the
HR). The image's cues (JPEG quality, blockiness, noise sigma) are read as ``auto`` reads them.
Then the ramps ``(start, full)`` are searched on a grid for those whose strengths lose the
least PSNR against each image's best strength (each kind of input weighted the same), and
compared with the ramps in the package and with the fixed ends: the mean loss in dB against
the best strength, per kind of input.

    python scripts/calibrate_denoise.py --images 48 --out campaign/results/denoise-calibration.json

Both scales' samples are pooled: the ramps are one set for x2 and x4.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data"
FOLDERS = ["train/BSD200", "train-more/Kodak24", "train-more/Wikipedia49", "train-more/McMaster18"]
STRENGTHS = [round(0.1 * i, 1) for i in range(11)]


def photos(n: int, crop: int) -> list[tuple[str, np.ndarray]]:
    """``n`` training photos, spread over the folders, centre-cropped to ``crop`` squared."""
    from seemore_sr.data.images import read_image

    files = sorted(f for d in FOLDERS for f in (TRAIN / d).glob("*") if f.suffix.lower() in {".png", ".jpg", ".bmp"})
    pick = [files[i] for i in np.linspace(0, len(files) - 1, n).round().astype(int)]
    out = []
    for f in pick:
        im = read_image(f)
        if im.ndim != 3 or min(im.shape[:2]) < crop:
            continue
        y, x = (im.shape[0] - crop) // 2, (im.shape[1] - crop) // 2
        out.append((f.name, np.ascontiguousarray(im[y : y + crop, x : x + crop, :3])))
    return out


def degraded(lr: np.ndarray, hr: np.ndarray, scale: int, kind: str, rng: np.random.Generator):
    """``(lr', level, quality)``: ``lr`` degraded as ``kind`` at a random level."""
    import torch

    from seemore_sr.data.degrade import add_noise, blur, gaussian_kernel, jpeg, to_uint8
    from seemore_sr.data.imresize import imresize

    if kind == "clean":
        return lr, 0.0, None
    if kind == "jpeg":
        q = int(rng.integers(30, 96))
        return jpeg(lr, q), q, q
    if kind == "noise":
        sigma = float(rng.uniform(0.5, 15))
        return add_noise(lr, rng, sigma, None, bool(rng.random() < 0.35)), sigma, None
    sigma, q = float(rng.uniform(0, 10)), int(rng.integers(40, 96))  # mixed: blur, noise, JPEG
    x = torch.from_numpy(hr.astype(np.float32)).permute(2, 0, 1)
    hb = to_uint8(blur(x, gaussian_kernel(float(rng.uniform(0.2, 0.6)) * scale)))
    return jpeg(add_noise(imresize(hb, 1 / scale), rng, sigma, None, False), q), sigma, q


def measure(scale: int, images, kinds: list[str], seed: int) -> list[dict]:
    """One row per (image, kind): the cues, and the PSNR-Y at every strength."""
    from seemore_sr import load_model
    from seemore_sr.data.imresize import imresize
    from seemore_sr.evaluation.metrics import psnr
    from seemore_sr.inference.denoise import blended, blockiness, noise_sigma
    from seemore_sr.inference.upscaler import Upscaler

    clean, real = load_model(f"seemore-tiny-x{scale}"), load_model(f"seemore-tiny-x{scale}-real")
    ups = {s: Upscaler(blended(clean, real, s), device="cpu", tile=0, mirror=0) for s in STRENGTHS}
    rows = []
    for i, (name, hr) in enumerate(images):
        lr = imresize(hr, 1 / scale)
        for k, kind in enumerate(kinds):
            rng = np.random.default_rng((seed, scale, i, k))
            x, level, quality = degraded(lr, hr, scale, kind, rng)
            scores = [psnr(ups[s](x), hr, crop_border=scale) for s in STRENGTHS]
            rows.append({"scale": scale, "image": name, "kind": kind, "level": level, "quality": quality,
                         "blockiness": blockiness(x), "noise": noise_sigma(x), "psnr": scores})  # fmt: skip
    return rows


def ramp(v: np.ndarray, ramp: tuple[float, float]) -> np.ndarray:
    """As ``denoise._ramp``, on arrays: 0 at ``ramp[0]``, 1 at ``ramp[1]``."""
    start, full = ramp
    return np.clip((np.asarray(v, dtype=np.float64) - start) / (full - start), 0, 1)


class Samples:
    """The rows of one kind as arrays: the cues, and each strength's PSNR loss against the
    row's best strength."""

    def __init__(self, rows: list[dict], file: bool) -> None:
        psnr = np.array([r["psnr"] for r in rows])
        self.regret = psnr.max(1, keepdims=True) - psnr
        self.quality = np.array([r["quality"] if file and r["quality"] is not None else np.nan for r in rows])
        self.block = np.array([r["blockiness"] for r in rows])
        self.noise = np.array([r["noise"] for r in rows])

    def strengths(self, ramps: dict) -> np.ndarray:
        """What ``auto`` gives: the JPEG cue (the file's quality, else the blockiness), the
        noise cue, the larger of the two, rounded to the 0.1 grid."""
        jpeg = np.where(np.isnan(self.quality), ramp(self.block, ramps["blockiness"]), 0.0)
        known = ~np.isnan(self.quality)
        jpeg[known] = ramp(self.quality[known], ramps["quality"])
        return np.maximum(jpeg, ramp(self.noise, ramps["noise"]))

    def loss(self, strengths: np.ndarray) -> float:
        idx = np.clip(np.rint(strengths * 10).astype(int), 0, 10)
        return float(self.regret[np.arange(len(idx)), idx].mean())


def losses(groups: dict[str, Samples], ramps: dict) -> dict[str, float]:
    return {name: g.loss(g.strengths(ramps)) for name, g in groups.items()}


def objective(groups: dict[str, Samples], ramps: dict) -> float:
    """Each kind of input counts the same (clean, JPEG, noise, mixed); a kind seen both as a
    file and as pixels, the mean of the two."""
    by_kind: dict[str, list[float]] = {}
    for name, v in losses(groups, ramps).items():
        by_kind.setdefault(name.split(" ")[0], []).append(v)
    return float(np.mean([np.mean(v) for v in by_kind.values()]))


# The candidates searched: (starts, fulls) of each ramp.
GRID = {
    "blockiness": (np.arange(1.0, 1.12, 0.01).round(2), np.arange(1.02, 1.3, 0.02).round(2)),
    "noise": (np.arange(1.0, 4.0, 0.25), np.arange(3.0, 12.0, 0.5)),
    "quality": (np.arange(100.0, 70.0, -5), np.arange(90.0, 40.0, -5)),
}


def fit(groups: dict[str, Samples], grid: dict = GRID) -> dict:
    """The ramps with the least :func:`objective`: blockiness and noise searched together
    (the quality ramp held at a middle value), then the quality ramp."""
    ramps = {"quality": (100.0, 80.0)}

    def pairs(name):  # rising ramps rise, the quality ramp falls
        starts, fulls = grid[name]
        falls = name == "quality"
        return [(float(a), float(b)) for a in starts for b in fulls if (a - b if falls else b - a) > 1e-6]

    best = min(
        itertools.product(pairs("blockiness"), pairs("noise")),
        key=lambda bn: objective(groups, {**ramps, "blockiness": bn[0], "noise": bn[1]}),
    )
    ramps |= {"blockiness": best[0], "noise": best[1]}
    ramps["quality"] = min(pairs("quality"), key=lambda q: objective(groups, {**ramps, "quality": q}))
    return ramps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--crop", type=int, default=192, help="HR crop side (a multiple of 4)")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=Path, help="refit the samples of an earlier --out, measuring nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "campaign" / "results" / "denoise-calibration.json")
    args = ap.parse_args()
    from seemore_sr.inference import denoise

    kinds = ["clean", "jpeg", "noise", "mixed"]
    if args.rows:
        earlier = json.loads(args.rows.read_text())
        rows, names = earlier["rows"], earlier["photos"]
    else:
        t = time.perf_counter()
        images = photos(args.images, args.crop)
        rows, names = [r for s in args.scales for r in measure(s, images, kinds, args.seed)], [n for n, _ in images]
        print(f"{len(rows)} samples ({len(images)} photos x {len(kinds)} kinds x {len(args.scales)} scales) "
              f"in {time.perf_counter() - t:.0f}s", file=sys.stderr)  # fmt: skip
    groups = {}
    for kind in kinds:
        rs = [r for r in rows if r["kind"] == kind]
        groups[f"{kind} (pixels)"] = Samples(rs, file=False)
        if kind in ("jpeg", "mixed"):  # as a JPEG file: its quality read from the tables
            groups[f"{kind} (file)"] = Samples(rs, file=True)
    shipped = {"quality": denoise.QUALITY_RAMP, "blockiness": denoise.BLOCKINESS_RAMP, "noise": denoise.NOISE_RAMP}
    fitted = fit(groups)
    report = {"samples": len(rows), "photos": names, "fitted": fitted, "shipped": shipped}
    report["loss"] = {}
    for label, r in (("shipped", shipped), ("fitted", fitted)):
        report["loss"][label] = {k: round(v, 3) for k, v in losses(groups, r).items()}
        report["loss"][label]["all"] = round(objective(groups, r), 3)
    for end in (0.0, 1.0):
        report["loss"][f"fixed {end:g}"] = {k: round(g.loss(np.full(len(g.regret), end)), 3) for k, g in groups.items()}
    args.out.write_text(json.dumps({**report, "rows": rows}, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("fitted", "shipped", "loss")}, indent=1))


if __name__ == "__main__":
    main()
