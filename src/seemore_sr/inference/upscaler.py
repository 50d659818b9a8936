"""``upscale`` and :class:`Upscaler`: any image in, the same kind of image out.

Accepted images and what comes back:

- ``PIL.Image``: modes L, RGB, RGBA, LA, P, I;16 (and anything PIL converts to RGB).
  The result has the input's mode (P becomes RGB / RGBA).
- ``numpy`` ``(H, W)`` or ``(H, W, C)`` with C in 1, 3, 4; uint8, uint16 or float in
  [0, 1]. The result has the same layout and dtype.
- ``torch.Tensor`` ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1], C in 1, 3, 4.
  The result is ``(…, C, H*s, W*s)`` of the same dtype and device class, clamped to [0, 1].

Colour meets the network's channels: for an RGB network (``in_chans=3``) a gray image
goes through as three equal channels and comes back gray (the channel mean); for a
gray network (``in_chans=1``) each colour channel goes through on its own. An alpha
channel is upscaled separately with bicubic resizing, never fed to the network as
colour; a fully opaque alpha is dropped. The network itself runs in an
:class:`~.engine.Engine` (device, precision, executor, tiles), which several
upscalers may share.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..data.imresize import imresize
from ..errors import InputError, OptionError
from .engine import DEFAULT_MODEL, MIRROR, Engine, Frame, resolve_device

__all__ = ["Upscaler", "upscale", "resolve_device", "DEFAULT_MODEL", "Engine"]


class Upscaler:
    """Images in, images out: ``Upscaler(...)(image)``, around an :class:`~.engine.Engine`.

    ``model``: an :class:`~.engine.Engine` to share, or what builds one: a registry name
    (bundled weights), a checkpoint path or a SeemoRe module, with ``device``,
    ``precision``, ``backend``, ``executor``, ``force_precision`` and ``mirror`` (the
    pixels mirrored around the image against the border rim; see ``Engine``).
    ``denoise``: for a registry name whose clean and ``-real`` weights are both bundled, a
    strength from 0 (the clean weights) to 1 (the real ones), the network interpolated
    between them (:mod:`~.denoise`), or ``"auto"``: decided per image from its JPEG quality
    and noise (:attr:`estimate` tells what the last image got). Default: ``"auto"`` for a
    ``-real`` name, else the weights as they are. Not thread-safe with ``"auto"``.
    ``tile``: ``"auto"`` (:meth:`Engine.tile_for`), ``0`` (never), or a tile side in input
    pixels; tiled output equals untiled output. ``outscale``: final scale relative to the
    input (e.g. 3.5); the network's output is resized to it with MATLAB-style bicubic
    (antialiased when shrinking). ``progress``: True for a progress bar over the tiles of
    big images (on a terminal only), or a callable ``progress(done, total)``.
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module | Engine = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        tile: int | str = "auto",
        outscale: float | None = None,
        backend: str = "torch",
        executor: str = "auto",
        progress: bool | Callable[[int, int], None] = False,
        force_precision: bool = False,
        mirror: int | str = MIRROR,
        denoise: float | str | None = None,
    ) -> None:
        self._pair: tuple[nn.Module, nn.Module] | None = None  # the clean and real networks, for blends
        self._blends: dict[float, Engine] = {}  # the engine of each strength used
        self.auto = False  # denoise="auto": a strength per image
        self.strength: float | None = None  # the denoise strength of the last image (None: no blend)
        self.estimate = None  # denoise="auto": what the last image's estimate read (denoise.Estimate)
        if isinstance(model, Engine):
            if denoise is not None:
                raise OptionError("denoise", denoise, "needs a registry name, not a built engine")
            self.engine = model
        else:
            self._engine_args = dict(
                device=device, precision=precision, backend=backend, executor=executor,
                force_precision=force_precision, mirror=mirror,
            )  # fmt: skip
            self._pair, start = _denoise_pair(model, denoise)
            self.auto = denoise == "auto" or (denoise is None and self._pair is not None)
            self.engine = Engine(model, **self._engine_args) if self._pair is None else self._blend(start)
        if tile != "auto" and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 0):
            raise OptionError("tile", tile, "must be 'auto', 0 or a positive integer")
        self.tile = tile
        if outscale is not None and not outscale > 0:
            raise OptionError("outscale", outscale, "must be positive")
        self.outscale = outscale
        self.progress = progress
        self.frame: Frame | None = None  # the pixels mirrored around every image; None: the engine's choice per image

    def _blend(self, strength: float) -> Engine:
        """The engine of the weights at ``strength`` (built once, then reused)."""
        if strength not in self._blends:
            from .denoise import blended

            self._blends[strength] = Engine(blended(*self._pair, strength), **self._engine_args)
        self.strength = strength
        return self._blends[strength]

    def _choose(self, image) -> None:
        """denoise="auto": the strength ``image`` asks for, and its engine."""
        if not self.auto:
            return
        from .denoise import estimate

        if isinstance(image, Tensor):
            t = image if image.ndim == 3 else image[0]
            image = t.detach().float().cpu().permute(1, 2, 0).numpy()
        self.estimate = estimate(image)
        self.engine = self._blend(self.estimate.strength)

    def decided(self, images: list) -> Upscaler:
        """A copy (sharing the engines) whose strength is fixed: with ``denoise="auto"``, the
        median of what ``images`` ask for (a video's first frames, so that the strength does
        not flicker); otherwise this upscaler as it is."""
        if not self.auto or not images:
            return self
        from .denoise import estimate

        estimates = sorted((estimate(im) for im in images), key=lambda e: e.strength)
        return self.fixed(estimates[len(estimates) // 2])

    def fixed(self, chosen) -> Upscaler:
        """A copy (sharing the engines) at the strength of ``chosen`` (a :class:`~.denoise.Estimate`), auto off."""
        other = copy.copy(self)
        other.auto, other.estimate = False, chosen
        other.engine = other._blend(chosen.strength)
        return other

    # the engine's facts, for callers that only hold the upscaler
    model = property(lambda self: self.engine.model)
    fast = property(lambda self: self.engine.fast)
    scale = property(lambda self: self.engine.scale)
    device = property(lambda self: self.engine.device)
    dtype = property(lambda self: self.engine.dtype)

    def tiled(self, h: int, w: int) -> int:
        """The tile side used for an ``h x w`` input, 0 when it runs whole."""
        return self.engine.tiled(h, w, self.tile)

    def _report(self, h: int, w: int) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
        """The progress callback for one run, and what closes it."""
        if callable(self.progress):
            return self.progress, lambda: None
        tile = self.tiled(h, w)
        if not self.progress or not tile or not sys.stderr.isatty():  # no escape codes in logs
            return None, lambda: None
        from tqdm import tqdm

        bars: list = []  # made at the first report, with the run's own count (its mirrored frame included)

        def report(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(total=total, desc=f"tiles ({tile}px)", unit="tile", leave=False))
            bars[0].update(done - bars[0].n)

        return report, lambda: bars and bars[0].close()

    @torch.no_grad()
    def run(self, x: Tensor, *, sink=None) -> Tensor | None:
        """The network's channels in and out: ``(N, C, H, W)`` float in [0, 1] -> ``(N, C, H*s, W*s)``
        float32 in [0, 1] on the CPU, resized to ``outscale`` if set. With ``sink`` (tiled runs,
        no ``outscale``), output tiles go to ``sink(box, tile)`` and None is returned."""
        h, w = x.shape[-2:]
        progress, close = self._report(h, w)
        try:
            y = self.engine.run(x, tile=self.tile, progress=progress, sink=sink, frame=self.frame)
        finally:
            close()
        if y is not None and self.outscale is not None and self.outscale != self.scale:
            size = (max(1, round(h * self.outscale)), max(1, round(w * self.outscale)))
            y = imresize(y, size=size).clamp_(0, 1)
        return y

    def framed_like(self, image: np.ndarray) -> Upscaler:
        """A copy (sharing the engine) that mirrors around every image what ``mirror`` gives
        ``image`` (``(H, W, C)`` uint8): a video segment's frames all get its first frame's,
        so a side's choice cannot flicker from frame to frame."""
        other = copy.copy(self)
        x = self._to_net(_color(image[..., None] if image.ndim == 2 else image)).div_(255.0)
        other.frame = self.engine.frame(x)
        return other

    # ------------------------------------------------------------------ channels
    def _to_net(self, color: np.ndarray) -> Tensor:
        """``(H, W, 1 or 3)`` colour planes -> the network's ``(N, C, H, W)``."""
        t = torch.from_numpy(np.ascontiguousarray(color, dtype=np.float32)).permute(2, 0, 1)
        if self.engine.config.in_chans == 1:
            return t[:, None].contiguous()  # each plane an image of its own
        return (t if t.shape[0] == 3 else t.expand(3, -1, -1))[None].contiguous()

    def _from_net(self, y: Tensor, planes: int) -> np.ndarray:
        """The network's ``(N, C, h, w)`` output -> ``(h, w, planes)``."""
        y = y[:, 0] if self.engine.config.in_chans == 1 else y[0]
        y = y.permute(1, 2, 0).numpy()
        return y.mean(axis=2, keepdims=True) if y.shape[2] != planes else y

    def _alpha(self, alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        a = imresize(torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None], size=size)[0]
        return a.clamp_(0, 1).numpy()

    def _streamed(self, a: np.ndarray, peak: float) -> np.ndarray:
        """A big ``(H, W, C)`` image, tiled: output tiles are quantised straight into the result,
        so no full-size float copy of the output is ever made."""
        h, w, c = a.shape
        s = self.scale
        out = np.empty((h * s, w * s, c), dtype=a.dtype)
        x = self._to_net(_color(a)).div_(peak)
        nc = 3 if c >= 3 else 1

        def sink(box, t: Tensor) -> None:
            out[box[0] : box[1], box[2] : box[3], :nc] = _quantize(self._from_net(t, nc), a.dtype, peak)

        self.run(x, sink=sink)
        if c in (2, 4):
            out[..., -1] = _quantize(self._alpha(a[..., -1].astype(np.float32) / peak, out.shape[:2]), a.dtype, peak)
        return out

    def _planes(self, arr: np.ndarray) -> np.ndarray:
        """float32 ``(H, W, C)`` in [0, 1] -> upscaled, same channels (gray / alpha handled)."""
        c = arr.shape[2]
        y = self._from_net(self.run(self._to_net(_color(arr))), 3 if c >= 3 else 1)
        if c in (2, 4):
            y = np.concatenate([y, self._alpha(arr[..., -1], y.shape[:2])[..., None]], axis=2)
        return y

    # ------------------------------------------------------------------ images
    def __call__(self, image):
        """Upscale a PIL image, numpy array or tensor; returns the same kind (see module doc)."""
        self._choose(image)
        if isinstance(image, Image.Image):
            return self._pil(image)
        if isinstance(image, np.ndarray):
            return self._numpy(image)
        if isinstance(image, Tensor):
            return self._tensor(image)
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(image).__name__}")

    def _tensor(self, t: Tensor) -> Tensor:
        if t.ndim not in (3, 4) or t.shape[-3] not in (1, 3, 4) or not t.is_floating_point():
            raise InputError(
                f"expected a float tensor (C, H, W) or (N, C, H, W) with C in 1/3/4, got {tuple(t.shape)} {t.dtype}"
            )
        batch = t if t.ndim == 4 else t[None]
        if batch.shape[1] == self.engine.config.in_chans:
            out = self.run(batch)
        else:
            out = torch.stack(
                [
                    torch.from_numpy(self._planes(b.permute(1, 2, 0).float().cpu().numpy())).permute(2, 0, 1)
                    for b in batch
                ]
            )
        out = out.to(t.device, t.dtype)
        return out if t.ndim == 4 else out[0]

    def _numpy(self, a: np.ndarray) -> np.ndarray:
        if a.ndim == 2:
            return self._numpy(a[..., None])[..., 0]
        if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
            raise InputError(f"expected an (H, W) or (H, W, C) array with C in 1..4, got shape {a.shape}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise InputError(f"empty image of shape {a.shape}")
        if a.dtype == np.uint8:
            peak = 255.0
        elif a.dtype == np.uint16:
            peak = 65535.0
        elif a.dtype.kind == "f":
            peak = 1.0
        else:
            raise InputError(f"unsupported dtype {a.dtype}: use uint8, uint16 or float in [0, 1]")
        if a.dtype.kind != "f" and self.outscale is None and self.tiled(*a.shape[:2]):
            return self._streamed(a, peak)
        y = self._planes(a.astype(np.float32) / peak)
        if a.dtype.kind == "f":
            return y.astype(a.dtype, copy=False)
        return _quantize(y, a.dtype, peak)

    def _pil(self, im: Image.Image) -> Image.Image:
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im).astype(np.uint16)
            return Image.fromarray(self._numpy(arr))
        elif mode == "F":  # 32-bit float (TIFF): values are read as they are, in 0..1
            arr = np.asarray(im, dtype=np.float32)
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            if not np.isfinite(arr).all() or lo < 0 or hi > 1:
                raise InputError(
                    f"32-bit float image with values from {lo:g} to {hi:g}: float images are read as 0..1 "
                    "(convert it to 8 or 16 bits, or scale it to 0..1)"
                )
            return Image.fromarray(self._numpy(arr), mode="F")
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            im = im.convert("RGB")
        arr = np.asarray(im)
        if im.mode in ("LA", "RGBA") and arr[..., -1].min() == 255:
            arr = arr[..., :-1]  # fully opaque: drop alpha cleanly
            if arr.shape[2] == 1:
                arr = arr[..., 0]
        out = self._numpy(arr)
        return Image.fromarray(out)


def _denoise_pair(model: object, denoise: float | str | None) -> tuple[tuple[nn.Module, nn.Module] | None, float]:
    """``((clean network, real network), first strength)`` for a
    registry name with both weights bundled when a blend is asked for (``denoise`` given,
    or a ``-real`` name's default ``auto``); ``(None, 0)`` when the weights run as they are."""
    real_name = isinstance(model, str) and model.endswith("-real")
    if denoise is None and not real_name:
        return None, 0.0
    if denoise != "auto" and denoise is not None:
        if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) or not 0 <= denoise <= 1:
            raise OptionError("denoise", denoise, "must be a strength from 0 to 1, or 'auto'")
    from ..models.hub import bundled_weights, load_model
    from ..models.registry import clean_name

    shipped = bundled_weights()
    pairs = ", ".join(n for n in shipped if n.endswith("-real") and clean_name(n) in shipped)
    if not isinstance(model, str) or clean_name(model) not in shipped or f"{clean_name(model)}-real" not in shipped:
        if real_name and denoise is None and isinstance(model, str) and model in shipped:
            return None, 0.0  # a -real file without its clean twin: run it as it is
        raise OptionError(
            "denoise", denoise, f"needs a model name with bundled clean and -real weights ({pairs or 'none'})"
        )
    start = 1.0 if denoise in (None, "auto") else float(denoise)
    return (load_model(clean_name(model)), load_model(f"{clean_name(model)}-real")), start


def _color(a: np.ndarray) -> np.ndarray:
    """The colour planes of an image: RGB of RGB(A), the gray plane of L(A)."""
    return a[..., :3] if a.shape[2] >= 3 else a[..., :1]


def _quantize(y: np.ndarray, dtype: np.dtype, peak: float) -> np.ndarray:
    """float in [0, 1] -> integers 0..peak, rounded half up (in place on ``y``)."""
    np.multiply(y, peak, out=y)
    y += 0.5
    np.floor(y, out=y)
    np.clip(y, 0, peak, out=y)
    return y.astype(dtype)


def upscale(image, model: str | os.PathLike | nn.Module = DEFAULT_MODEL, **kwargs):
    """One-shot ``Upscaler(model, **kwargs)(image)``; see :class:`Upscaler`."""
    return Upscaler(model, **kwargs)(image)
