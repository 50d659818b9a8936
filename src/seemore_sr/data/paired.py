"""Training pairs: HR images, LR made once with MATLAB-compatible bicubic, random patches.

Each batch is a pure function of ``(seed, iteration)``: resuming at iteration ``i``
draws exactly the batches an uninterrupted run would have drawn, with no sampler
state to save. Images are decoded and downscaled once, at start, and patches are cut
from memory. The decoded and downscaled arrays are cached on disk
(``<cache>/pairs/``, one ``.npz`` per image and scale, keyed by the file's content), so a
resumed or repeated run starts in seconds; a changed file gets a new key, and a damaged
or inconsistent entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import SeemoreError
from .degrade import degrade_patch
from .degrade_config import DegradeConfig
from .images import ImageError, list_images, read_image
from .imresize import imresize
from .synthetic import synthetic_patch

__all__ = ["PairedImages", "DataError", "find_pairs", "load_pair"]


class DataError(SeemoreError, ValueError):
    """Training data that cannot be used; the message names the folder or file."""


@dataclass
class _Pair:
    hr: np.ndarray  # uint8 (H, W, 3), H and W multiples of scale
    lr: np.ndarray  # uint8 (H/s, W/s, 3)


def find_pairs(folder: Path, scale: int, recursive: bool | None = None) -> list[tuple[Path, Path | None]]:
    """``(hr, lr or None)`` for an HR folder, or an ``HR/`` + ``LR_bicubic/X{s}`` pair.

    LR files follow the benchmark naming, ``LR_bicubic/X2/babyx2.png`` for ``HR/baby.png``.
    A bare HR folder is searched recursively unless ``recursive`` says otherwise.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    hr_dir = folder / "HR" if (folder / "HR").is_dir() else folder
    lr_dir = folder / "LR_bicubic" / f"X{scale}"
    hrs = list_images(hr_dir, recursive=hr_dir is folder if recursive is None else recursive)
    if not hrs:
        raise DataError(f"{hr_dir}: no images found")
    out = []
    for hr in hrs:
        lr = lr_dir / f"{hr.stem}x{scale}{hr.suffix}"
        out.append((hr, lr if lr.is_file() else None))
    return out


def load_pair(hr_path: Path, lr_path: Path | None, scale: int) -> _Pair:
    hr = read_image(hr_path, gray_ok=False)
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    if h == 0 or w == 0:
        raise DataError(f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}")
    hr = np.ascontiguousarray(hr[:h, :w])
    lr = read_image(lr_path, gray_ok=False) if lr_path else imresize(hr, 1 / scale)
    if lr.shape[:2] != (h // scale, w // scale):
        raise DataError(f"{lr_path}: LR size {lr.shape[:2]} does not match HR {hr.shape[:2]} / {scale}")
    return _Pair(hr, lr)


CACHE_VERSION = 1  # of the cached arrays' layout and of load_pair's arithmetic


def cached_pair(hr: Path, lr: Path | None, scale: int, cache: Path | None) -> tuple[_Pair, bool]:
    """:func:`load_pair`, through the on-disk cache when ``cache`` is a folder:
    ``(pair, read from the cache)``."""
    if cache is None:
        return load_pair(hr, lr, scale), False
    h = hashlib.sha256(f"v{CACHE_VERSION} x{scale}".encode())
    for path in (hr, lr):
        if path is not None:
            h.update(path.read_bytes())
    entry = cache / f"{h.hexdigest()[:32]}.npz"
    if entry.is_file():
        try:
            with np.load(entry) as z:
                pair = _Pair(z["hr"], z["lr"])
            hh, ww = pair.hr.shape[:2]
            if pair.hr.dtype == pair.lr.dtype == np.uint8 and pair.lr.shape == (hh // scale, ww // scale, 3):
                if hh % scale == 0 and ww % scale == 0 and pair.hr.ndim == 3:
                    return pair, True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # damaged: rebuilt below
    pair = load_pair(hr, lr, scale)
    try:
        from .._fs import atomic_path

        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(entry) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, hr=pair.hr, lr=pair.lr)
    except OSError:
        pass  # an unwritable cache: built again next time
    return pair, False


class PairedImages:
    """Random aligned ``(lr, hr)`` patch batches from HR folders.

    ``cache``: the folder of the on-disk cache (default ``<cache_dir>/pairs``; None: no
    cache). ``progress``: a progress bar while loading (on a terminal)."""

    def __init__(
        self,
        folders: list[str | Path],
        scale: int,
        patch_size: int,
        seed: int = 0,
        skip_small: bool = False,
        *,
        cache: Path | None | str = "default",
        progress: bool = False,
        synthetic: float = 0.0,
        degrade: DegradeConfig | None = None,
    ) -> None:
        from .._fs import cache_dir, release_free_memory

        self.scale, self.patch, self.seed = scale, patch_size, seed
        self.synthetic = synthetic  # fraction of patches made by data.synthetic (flat colours, shapes)
        self.degrade = degrade if degrade is not None and degrade.enabled else None  # random LR degradations
        self.teach: list[np.ndarray] | None = None  # a teacher's outputs, HR-sized, one per pair (training/teacher.py)
        start = time.perf_counter()
        files = [p for f in folders for p in find_pairs(Path(f), scale)]
        cache = cache_dir() / "pairs" if cache == "default" else (Path(cache) if cache else None)
        self.pairs: list[_Pair] = []
        self._sizes: list[tuple[int, int]] = []  # (shorter LR side, HR pixels) of every image found
        self.cached = 0  # images read from the cache
        small = []
        bar = None
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=len(files), desc="loading images", unit="img", leave=False)
        for hr, lr in files:
            try:
                pair, hit = cached_pair(hr, lr, scale, cache)
            except ImageError as e:
                raise DataError(str(e)) from None
            self.cached += hit
            if not hit:
                release_free_memory()  # a photo's decode / resize buffers, before the next one's
            if bar is not None:
                bar.update(1)
            self._sizes.append((min(pair.lr.shape[:2]), pair.hr.shape[0] * pair.hr.shape[1]))
            if min(pair.lr.shape[:2]) < patch_size:
                small.append(f"{hr} ({pair.lr.shape[1]}x{pair.lr.shape[0]} LR)")
                continue
            self.pairs.append(pair)
        if small and (not skip_small or not self.pairs):
            raise DataError(
                f"{len(small)} image(s) smaller than the LR patch {patch_size}px: "
                + ", ".join(small[:3])
                + (" ..." if len(small) > 3 else "")
                + "; lower data.patch_size or remove them"
            )
        if bar is not None:
            bar.close()
        self.skipped = small
        self.load_seconds = time.perf_counter() - start
        release_free_memory()  # the decode / resize buffers: not part of the run's footprint

    @property
    def fingerprint(self) -> str:
        """What identifies the training set wherever it lies and whatever the patch size: the
        count and HR pixels of every image found, those skipped as too small included."""
        return self.fingerprint_at(0)

    def fingerprint_at(self, patch_size: int) -> str:
        """The fingerprint of the images a patch of ``patch_size`` keeps: how states written
        before the patch-independent fingerprint recorded it, at their own patch size."""
        kept = [px for side, px in self._sizes if side >= patch_size]
        return f"{len(kept)} images, {sum(kept)} HR pixels"

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, iteration: int, size: int, offset: int = 0) -> tuple[Tensor, ...]:
        """The batch for ``iteration``; ``offset`` selects a rank's slice of a global batch.

        Returns float32 ``(lr [n,3,p,p], hr [n,3,p*s,p*s])`` in [0, 1], and the teacher's
        patches (as ``hr``) third when :attr:`teach` is set (a synthetic patch's is its HR).
        """
        rng = np.random.default_rng([self.seed, iteration])
        n_total = offset + size
        idx = rng.integers(0, len(self.pairs), n_total)
        ys, xs = rng.random(n_total), rng.random(n_total)
        aug = rng.integers(0, 8, n_total)
        p, s = self.patch, self.scale
        # which patches are synthetic: a stream of its own, so the photographs' crops are
        # those of a run without synthetic patches
        syn = np.random.default_rng([self.seed, iteration, 1])
        made = syn.random(n_total) < self.synthetic
        lrs, hrs, teach = [], [], []
        for i in range(offset, n_total):
            if made[i]:
                lr, hr = synthetic_patch(np.random.default_rng([self.seed, iteration, 2, i]), p, s)
                lr = self._degraded(lr, hr, iteration, i)
                lrs.append(lr)
                hrs.append(hr)
                teach.append(hr)
                continue
            pair = self.pairs[idx[i]]
            h, w = pair.lr.shape[:2]
            y, x = int(ys[i] * (h - p + 1)), int(xs[i] * (w - p + 1))
            lr = pair.lr[y : y + p, x : x + p]
            hr = pair.hr[y * s : (y + p) * s, x * s : (x + p) * s]
            lr = self._degraded(lr, hr, iteration, i)
            lrs.append(_augment(lr, aug[i]))
            hrs.append(_augment(hr, aug[i]))
            if self.teach is not None:
                teach.append(_augment(self.teach[idx[i]][y * s : (y + p) * s, x * s : (x + p) * s], aug[i]))
        to = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return (to(lrs), to(hrs)) if self.teach is None else (to(lrs), to(hrs), to(teach))

    def _degraded(self, lr: np.ndarray, hr: np.ndarray, iteration: int, i: int) -> np.ndarray:
        """Patch ``i``'s LR as training sees it: degraded from ``hr`` when ``degrade`` is set,
        from a stream of its own (the crops stay those of a clean run)."""
        if self.degrade is None:
            return lr
        return degrade_patch(hr, lr, self.scale, np.random.default_rng([self.seed, iteration, 3, i]), self.degrade)


def _augment(img: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations (dihedral group), the same for LR and HR."""
    if code & 1:
        img = img[:, ::-1]
    if code & 2:
        img = img[::-1]
    if code & 4:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)
