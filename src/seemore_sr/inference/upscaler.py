"""``upscale`` and :class:`Upscaler`: any image in, the same kind of image out.

Accepted images and what comes back:

- ``PIL.Image``: modes L, RGB, RGBA, LA, P, I;16 (and anything PIL converts to RGB).
  The result has the input's mode (P becomes RGB / RGBA).
- ``numpy`` ``(H, W)`` or ``(H, W, C)`` with C in 1, 3, 4; uint8, uint16 or float in
  [0, 1]. The result has the same layout and dtype.
- ``torch.Tensor`` ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1], C in 1, 3, 4.
  The result is ``(…, C, H*s, W*s)`` of the same dtype and device class, clamped to [0, 1].

Gray images go through the network as three equal channels and come back gray (the
channel mean). An alpha channel is upscaled separately with bicubic resizing, never
fed to the network as colour; a fully opaque alpha is dropped.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..data.imresize import imresize
from ..models.seemore import SeemoRe
from .tiling import available_bytes, tile_count, tile_steps, tiled_forward

__all__ = ["Upscaler", "upscale", "resolve_device", "DEFAULT_MODEL"]

DEFAULT_MODEL = "seemore-tiny-x4"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (cuda, then mps, then cpu) or a named device, checked to exist here."""
    mps = getattr(torch.backends, "mps", None)
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no CUDA GPU usable by PyTorch (try auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not (mps and mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available on this machine (try auto or cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: unsupported device type {dev.type!r} (use auto, cpu, cuda or mps)")
    return dev


_warned_bf16 = False


def _no_native_bf16() -> bool:
    """True (and a warning, once per process) where bf16 would be emulated on this CPU."""
    global _warned_bf16
    from ..bench import cpu_description, native_bf16

    if native_bf16() is not False:
        return False
    if not _warned_bf16:
        _warned_bf16 = True
        warnings.warn(
            f"bf16 on a CPU without native bf16 (avx512_bf16 or AMX): {cpu_description()}; it ran 2.2x slower "
            "than fp32 on such a Xeon (1.17 s against 0.53 s, x4 to 720p), so fp32 runs instead "
            "(force_precision=True, or --force-precision, insists on bf16)",
            stacklevel=3,
        )
    return True


class Upscaler:
    """Holds a loaded model for repeated calls: ``Upscaler(...)(image)``.

    ``model``: a registry name (bundled weights), a checkpoint path, or a SeemoRe module.
    ``tile``: ``"auto"`` (see :meth:`tile_for`), ``0`` (never), or a tile side in input
    pixels. Tiled output equals untiled output.
    ``outscale``: final scale relative to the input (e.g. 3.5); the network's output
    is resized to it with MATLAB-style bicubic (antialiased when shrinking).
    ``precision="bf16"`` on a CPU without native bf16 (no ``avx512_bf16`` or AMX) warns once
    and runs fp32, which is faster there (BENCHMARKS.md), unless ``force_precision`` insists.
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        tile: int | str = "auto",
        outscale: float | None = None,
        backend: str = "torch",
        progress: bool | Callable[[int, int], None] = False,
        force_precision: bool = False,
    ) -> None:
        from ..models.hub import load_model

        if precision not in _DTYPES:
            raise ValueError(f"precision must be one of {sorted(_DTYPES)}, got {precision!r}")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise ValueError("fp16 is not supported on the CPU (slow and overflow-prone); use bf16 or fp32")
        net = model if isinstance(model, nn.Module) else load_model(model)
        if not isinstance(net, SeemoRe):
            raise TypeError("model must be a SeemoRe network")
        if net is model:  # the caller's module: left as it is (mode, device), we hold a copy
            net = copy.deepcopy(net)
        self.model = net.eval().requires_grad_(False).to(self.device)
        if precision == "bf16" and self.device.type == "cpu" and not force_precision and _no_native_bf16():
            precision = "fp32"
        self.dtype = _DTYPES[precision]
        self.scale = net.config.scale
        if tile != "auto" and (not isinstance(tile, int) or tile < 0):
            raise ValueError(f"tile must be 'auto', 0 or a positive integer, got {tile!r}")
        self.tile = tile
        if outscale is not None and outscale <= 0:
            raise ValueError(f"outscale must be positive, got {outscale}")
        self.outscale = outscale
        # True: a progress bar over the tiles of big images; a callable: ``progress(done, total)``
        # after each tile step (a tiled run) or once per network pass (an untiled one)
        self.progress = progress
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be torch or onnxruntime, got {backend!r}")
        if backend == "onnxruntime":
            if self.device.type != "cpu" or precision != "fp32":
                raise ValueError("the onnxruntime backend runs on the CPU in fp32")
            from .export import onnx_runner

            self.fast: nn.Module = onnx_runner(net)
            self.tile = 0  # routing lives in the graph; the ONNX model runs whole images
        else:
            from .fast import optimize

            self.fast = optimize(self.model)

    # ------------------------------------------------------------------ tensors
    def tile_for(self, h: int, w: int) -> int:
        """Tile side for an ``h x w`` input (0: untiled).

        Tiles are exact, so "auto" picks by speed and memory. CPU: 256-pixel tiles above
        512x512 input pixels (faster than a whole-image pass there: the working set stays
        in cache and small buffers are reused; ``benchmarks/bench_tiling.py``, README).
        GPU: whole images while they fit in a quarter of free memory, else 512.
        """
        if self.tile != "auto":
            return int(self.tile)
        f = self.model.config.min_size
        pixels = max(h, f) * max(w, f)  # what the network computes on: thin images are padded
        if self.device.type == "cpu":
            return 256 if pixels > 512 * 512 else 0
        c = self.model.config.embedding_dim
        per_pixel = 4 * (10 * c + 2 * 3 * self.scale**2)  # activations alive in one group + output
        if pixels * per_pixel < available_bytes(self.device) // 4:
            return 0
        return 512

    def tiled(self, h: int, w: int) -> int:
        """The tile side used for an ``h x w`` input, 0 when it runs whole (one tile or none).

        Tiles go by area (:func:`~seemore_sr.inference.tiling.tile_shape`): ``tile x tile``
        pixels each, so a 65536 x 1 strip runs in tiles of a 256 x 256 tile's working set
        (plus the whole-image feature maps every tiled run keeps).
        """
        tile = self.tile_for(h, w)
        return tile if tile and tile_count(h, w, tile, self.model.config.min_size) > 1 else 0

    @torch.no_grad()
    def run(self, x: Tensor, progress: Callable[[], None] | None = None, *, sink=None) -> Tensor | None:
        """``(N, 3, H, W)`` float in [0, 1] -> ``(N, 3, H*s, W*s)`` float32 in [0, 1] (on CPU).

        With ``sink`` (tiled runs only, no ``outscale``), output tiles are handed to
        ``sink(box, tile)`` as they are computed and None is returned.
        """
        x = x.float()
        tile = self.tiled(*x.shape[-2:])
        if self.dtype == torch.float16:  # fp16 only where it does not overflow: checked on every output
            try:
                return self._run(x, tile, torch.float16, progress, sink)
            except _NonFinite:
                warnings.warn("fp16 overflowed on this image (inf/NaN in the output); ran it in fp32", stacklevel=2)
        elif self.dtype != torch.float32:
            return self._run(x, tile, self.dtype, progress, sink)
        if self.device.type == "cuda":
            from .fast import exact_cudnn

            with exact_cudnn():
                return self._run(x, tile, torch.float32, progress, sink)
        return self._run(x, tile, torch.float32, progress, sink)

    def _run(self, x: Tensor, tile: int, dtype: torch.dtype, progress, sink) -> Tensor | None:
        autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)
        check = dtype == torch.float16
        if tile:
            bar = None
            if progress is None and self.progress:
                steps = tile_steps(self.model, *x.shape[-2:], tile)
                if callable(self.progress):
                    progress = _counter(self.progress, steps)
                else:
                    from tqdm import tqdm

                    bar = tqdm(total=steps, desc=f"tiles ({tile}px)", unit="tile", leave=False)
                    progress = bar.update
            if sink is not None:
                inner = sink

                def sink(box, t):
                    t = t.float()
                    if check and not bool(torch.isfinite(t).all()):
                        raise _NonFinite
                    inner(box, t.clamp_(0, 1).cpu())

            with autocast:  # x stays where it is; tiles go to the device one at a time
                y = tiled_forward(self._tiler(), x, tile, progress, sink=sink)
            if bar is not None:
                bar.close()
            if y is None:
                return None
        else:
            if sink is not None:
                raise ValueError("sink is for tiled runs only")
            with autocast:
                y = self.fast(x.to(self.device))
            if callable(self.progress):
                self.progress(1, 1)
        y = y.float()
        if check and not bool(torch.isfinite(y).all()):
            raise _NonFinite
        y = y.clamp_(0, 1).cpu()
        if self.outscale is not None and self.outscale != self.scale:
            h, w = x.shape[-2:]
            size = (max(1, round(h * self.outscale)), max(1, round(w * self.outscale)))
            y = imresize(y, size=size).clamp_(0, 1)
        return y

    def _tiler(self) -> nn.Module:
        """What tiles run through: the NHWC network on the CPU, else the network's own NCHW
        stages (cuDNN on a GPU; CUDA graphs replay whole images only)."""
        from .nhwc import FastSeemoRe

        return self.fast if isinstance(self.fast, FastSeemoRe) else self.model

    def _alpha(self, alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        a = imresize(torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None], size=size)[0]
        return a.clamp_(0, 1).numpy()

    def _streamed(self, a: np.ndarray, peak: float) -> np.ndarray:
        """A big ``(H, W, C)`` image, tiled: output tiles are quantised straight into the result,
        so no full-size float copy of the output is ever made."""
        h, w, c = a.shape
        s = self.scale
        out = np.empty((h * s, w * s, c), dtype=a.dtype)
        x = torch.from_numpy(_color(a).astype(np.float32)).permute(2, 0, 1)[None].div_(peak)
        nc = 3 if c >= 3 else 1

        def sink(box, t: Tensor) -> None:
            y = t[0].permute(1, 2, 0).numpy()
            if nc == 1:
                y = y.mean(axis=2, keepdims=True)
            out[box[0] : box[1], box[2] : box[3], :nc] = _quantize(y, a.dtype, peak)

        self.run(x, sink=sink)
        if c in (2, 4):
            out[..., -1] = _quantize(self._alpha(a[..., -1].astype(np.float32) / peak, out.shape[:2]), a.dtype, peak)
        return out

    def _planes(self, arr: np.ndarray) -> np.ndarray:
        """float32 ``(H, W, C)`` in [0, 1] -> upscaled, same channels (gray / alpha handled)."""
        c = arr.shape[2]
        x = torch.from_numpy(np.ascontiguousarray(_color(arr))).permute(2, 0, 1)[None]
        y = self.run(x)[0].permute(1, 2, 0).numpy()
        if c in (1, 2):
            y = y.mean(axis=2, keepdims=True)
        if c in (2, 4):
            y = np.concatenate([y, self._alpha(arr[..., -1], y.shape[:2])[..., None]], axis=2)
        return y

    # ------------------------------------------------------------------ images
    def __call__(self, image):
        """Upscale a PIL image, numpy array or tensor; returns the same kind (see module doc)."""
        if isinstance(image, Image.Image):
            return self._pil(image)
        if isinstance(image, np.ndarray):
            return self._numpy(image)
        if isinstance(image, Tensor):
            return self._tensor(image)
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(image).__name__}")

    def _tensor(self, t: Tensor) -> Tensor:
        if t.ndim not in (3, 4) or t.shape[-3] not in (1, 3, 4) or not t.is_floating_point():
            raise ValueError(
                f"expected a float tensor (C, H, W) or (N, C, H, W) with C in 1/3/4, got {tuple(t.shape)} {t.dtype}"
            )
        batch = t if t.ndim == 4 else t[None]
        c = batch.shape[1]
        if c == 3:
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
            raise ValueError(f"expected an (H, W) or (H, W, C) array with C in 1..4, got shape {a.shape}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"empty image of shape {a.shape}")
        if a.dtype == np.uint8:
            peak = 255.0
        elif a.dtype == np.uint16:
            peak = 65535.0
        elif a.dtype.kind == "f":
            peak = 1.0
        else:
            raise ValueError(f"unsupported dtype {a.dtype}: use uint8, uint16 or float in [0, 1]")
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
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            im = im.convert("RGB")
        arr = np.asarray(im)
        if im.mode in ("LA", "RGBA") and arr[..., -1].min() == 255:
            arr = arr[..., :-1]  # fully opaque: drop alpha cleanly
            if arr.shape[2] == 1:
                arr = arr[..., 0]
        out = self._numpy(arr)
        return Image.fromarray(out)


def _color(a: np.ndarray) -> np.ndarray:
    """The three colour planes the network sees: RGB of RGB(A), or gray repeated."""
    return a[..., :3] if a.shape[2] >= 3 else np.repeat(a[..., :1], 3, axis=2)


def _counter(report: Callable[[int, int], None], total: int) -> Callable[[], None]:
    """A step callback that reports ``(done, total)``."""
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        report(done, total)

    report(0, total)
    return step


class _NonFinite(Exception):
    """A reduced-precision output held inf / NaN."""


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
