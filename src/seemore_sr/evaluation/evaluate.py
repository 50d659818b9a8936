"""``seemore eval``: the literature's protocol over benchmark folders.

Protocol: crop HR to a multiple of the scale, LR from ``LR_bicubic/X{s}`` when present
(else MATLAB-compatible bicubic, cached on disk), super-resolve, quantise to 8 bits,
PSNR / SSIM on Y with ``crop_border = scale``. Gray images are resized and compared as
one channel (the network sees three equal channels and its output is averaged).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .._fs import atomic_path
from ..data.degrade import PRESETS, degrade_lr
from ..data.images import ImageError, read_image
from ..data.imresize import imresize
from ..data.paired import DataError, find_pairs
from .metrics import psnr, ssim

__all__ = ["DatasetResult", "evaluate", "paper_numbers", "lr_for", "write_json", "write_csv", "PAPER_CSV"]

# The paper's tables (a copy of ../shared/reference/paper_results.csv), shipped as package data.
PAPER_CSV = Path(__file__).with_name("paper_results.csv")


@dataclass
class DatasetResult:
    name: str
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "psnr": float(np.mean(self.psnr)) if self.psnr else None,
            "ssim": float(np.mean(self.ssim)) if self.ssim else None,
            "images": len(self.psnr),
        }


def _cache_dir() -> Path:
    root = os.environ.get("SEEMORE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "seemore-sr"
    )
    return Path(root) / "lr"


def lr_for(hr: np.ndarray, scale: int, lr_path: Path | None) -> np.ndarray:
    """The LR image: the dataset's own file if there is one, else cached MATLAB bicubic."""
    if lr_path is not None:
        return read_image(lr_path)
    key = hashlib.sha1(hr.tobytes() + str((hr.shape, scale)).encode()).hexdigest()[:20]
    cached = _cache_dir() / f"{key}.png"
    if cached.is_file():
        try:
            return np.asarray(Image.open(cached))
        except OSError:
            pass
    lr = imresize(hr, 1 / scale)
    try:
        with atomic_path(cached) as tmp:
            Image.fromarray(lr).save(tmp, format="PNG")
    except OSError:
        pass  # a read-only cache is not an error
    return lr


def evaluate(
    method,
    datasets: list[str | Path],
    scale: int,
    *,
    save_images: str | Path | None = None,
    progress: bool = True,
    log=print,
    degrade: str = "clean",
) -> list[DatasetResult]:
    """Evaluate ``method`` (``"bicubic"`` or an :class:`Upscaler`) on each dataset folder.

    ``degrade``: a preset of :data:`~seemore_sr.data.degrade.PRESETS` applied to every LR
    (after the MATLAB-bicubic downscale), its noise seeded by the file's name; with
    ``save_images`` the degraded LR is saved beside each output (``<name>_lr.png``)."""
    from ..inference.upscaler import Upscaler

    if degrade not in PRESETS:
        raise ValueError(f"degradation preset {degrade!r}: not one of {', '.join(PRESETS)}")

    results = []
    for folder in map(Path, datasets):
        res = DatasetResult(folder.name)
        results.append(res)
        try:
            if not folder.is_dir():
                raise DataError(f"{folder}: no such folder")
            files = find_pairs(folder, scale, recursive=False)
        except DataError as e:
            res.errors.append(str(e))
            log(f"failed: {e}")
            continue
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc=folder.name, unit="img", dynamic_ncols=True, leave=False)
        for path, lr_path in it:
            try:
                hr = read_image(path)
                h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
                if min(h, w) - 2 * scale < 11:  # PSNR/SSIM ignore `scale` border pixels; SSIM's window is 11
                    raise ImageError(
                        f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small to evaluate at x{scale} "
                        f"(at least {11 + 2 * scale} pixels a side)"
                    )
                hr = np.ascontiguousarray(hr[:h, :w])
                lr = degrade_lr(lr_for(hr, scale, lr_path), hr, scale, degrade, path.name)
                if method == "bicubic":
                    sr = imresize(lr, float(scale))
                else:
                    assert isinstance(method, Upscaler)
                    sr = method(lr)
                if sr.shape != hr.shape:
                    raise ImageError(f"{path}: output {sr.shape} does not match HR {hr.shape}")
                res.psnr.append(psnr(sr, hr, scale))
                res.ssim.append(ssim(sr, hr, scale))
                if save_images:
                    out = Path(save_images) / folder.name / f"{path.stem}.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(sr).save(out)
                    if degrade != "clean":
                        Image.fromarray(lr).save(out.with_name(f"{path.stem}_lr.png"))
            except (ImageError, ValueError, OSError) as e:
                msg = str(e) if str(path) in str(e) else f"{path}: {e}"
                res.errors.append(msg)
                log(f"failed: {msg}")
    return results


def paper_numbers(method: str, scale: int, csv_path: Path = PAPER_CSV) -> dict[str, dict[str, float]]:
    """``{dataset: {"psnr", "ssim"}}`` of the paper's row for ``method`` at ``scale``."""
    out: dict[str, dict[str, float]] = {}
    if not csv_path.is_file():
        return out
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            if row["method"] == method and int(row["scale"]) == scale:
                for key in row:
                    if key.endswith("_psnr") and row[key]:
                        ds = key[: -len("_psnr")]
                        out[ds] = {"psnr": float(row[key]), "ssim": float(row[f"{ds}_ssim"])}
    return out


def write_json(results: list[DatasetResult], path: str | Path) -> None:
    Path(path).write_text(json.dumps({r.name: r.summary() for r in results}, indent=2) + "\n")


def write_csv(results: list[DatasetResult], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "psnr", "ssim", "images"])
        for r in results:
            s = r.summary()
            if s["images"]:
                w.writerow([r.name, f"{s['psnr']:.4f}", f"{s['ssim']:.5f}", s["images"]])
            else:
                w.writerow([r.name, "", "", 0])
