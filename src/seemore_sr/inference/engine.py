"""The tensor engine: a loaded network on its device, run whole or in exact tiles.

:class:`Engine` holds what is costly to build and the same for every image: the
weights on the device, the executor ``optimize`` chose (or the onnxruntime graph), the
precision. It takes and returns tensors: ``(N, C, H, W)`` float in [0, 1], C the
network's ``in_chans``, to ``(N, C, H*s, W*s)`` float32 in [0, 1] on the CPU. Images of
every kind (PIL, numpy, gray, alpha, 16 bits) are :class:`~.upscaler.Upscaler`'s
business; one engine serves any number of upscalers (the web app keeps one per model).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import DeviceError, OptionError, PrecisionFallback, Refused
from ..models.seemore import SeemoRe
from . import MIRROR, MIRROR_GRAPHICS, MIRROR_MAX
from .tiling import available_bytes, tile_count, tile_steps, tiled_forward

__all__ = ["Engine", "resolve_device", "DTYPES", "DEFAULT_MODEL", "MIRROR", "mirror_pad", "flat_sides", "Frame"]

DEFAULT_MODEL = "seemore-tiny-x4"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

Progress = Callable[[int, int], None]  # (done, total) tile steps, or (1, 1) for a whole-image pass


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
        raise DeviceError(device, "not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(device, "this machine has no CUDA GPU usable by PyTorch (try auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(device, f"only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not (mps and mps.is_available()):
        raise DeviceError(device, "MPS is not available on this machine (try auto or cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(device, f"unsupported device type {dev.type!r} (use auto, cpu, cuda or mps)")
    return dev


_warned_bf16 = False


def _bf16_fallback() -> PrecisionFallback | None:
    """Where bf16 would be emulated on this CPU, the fallback to fp32 (warned once per
    process); None where the CPU computes bf16 natively (or says nothing)."""
    global _warned_bf16
    from ..bench import cpu_description, native_bf16

    if native_bf16() is not False:
        return None
    why = f"is emulated on a CPU without native bf16 (avx512_bf16 or AMX: {cpu_description()}), slower than fp32"
    fallback = PrecisionFallback("bf16", "fp32", why)
    if not _warned_bf16:
        _warned_bf16 = True
        warnings.warn(fallback, stacklevel=3)
    return fallback


Frame = tuple[int, int, int, int]  # input pixels mirrored above, below, left and right of an image


def mirror_pad(x: Tensor, frame: int | Frame) -> Tensor:
    """``x`` with pixels of itself mirrored around it: ``frame`` pixels on every side, or
    ``(top, bottom, left, right)``; edge pixels repeated where a side is too short to mirror."""
    top, bottom, left, right = (frame,) * 4 if isinstance(frame, int) else frame
    if not any((top, bottom, left, right)):
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if h > max(top, bottom) and w > max(left, right) else "replicate"
    return torch.nn.functional.pad(x, (left, right, top, bottom), mode=mode)


def flat_sides(x: Tensor, depth: int, tol: float = 4 / 255, share: float = 0.9) -> tuple[bool, bool, bool, bool]:
    """Which sides of ``(N, C, H, W)`` images are flat (top, bottom, left, right): in every
    image, at least ``share`` of the band ``depth`` pixels deep along the side lies within
    ``tol`` (every channel) of the band's median colour. Flat graphics' edges are (a logo's
    background, a screenshot's margin, letterbox bars); photographs' edges seldom are."""
    bands = (x[..., :depth, :], x[..., -depth:, :], x[..., :, :depth], x[..., :, -depth:])
    out = []
    for b in bands:
        b = b.flatten(2)  # (N, C, pixels)
        near = ((b - b.median(-1, keepdim=True).values).abs() <= tol).all(1)  # (N, pixels)
        out.append(bool((near.float().mean(-1) >= share).all()))
    return tuple(out)


class _NonFinite(Exception):
    """A reduced-precision output held inf / NaN."""


class Engine:
    """A network ready to run: ``Engine(model)(x)`` or :meth:`run` for tiles and progress.

    ``model``: a registry name (bundled weights), a checkpoint path, or a SeemoRe module
    (copied: the caller's module is left as it is). ``executor``: how ``optimize`` runs
    the folded network ("auto" measures on CPUs; :func:`~.fast.optimize`). ``precision``
    ``"bf16"`` on a CPU without native bf16 warns once (:class:`PrecisionFallback`) and
    runs fp32 unless ``force_precision``; ``"fp16"`` is for GPUs, and an image whose fp16
    output holds inf / NaN runs again in fp32. ``mirror``: pixels of the image mirrored
    around it before the network runs and cropped after, against the coloured frame flat
    colours get at the border (:mod:`seemore_sr.inference`): "auto" (the default) mirrors
    4 on the sides that are flat, an integer on every side, 0 none (the network's output on
    the image alone, as the authors' code gives it).
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        backend: str = "torch",
        executor: str = "auto",
        force_precision: bool = False,
        mirror: int | str = MIRROR,
    ) -> None:
        from ..models.hub import load_model

        if mirror != "auto" and (
            not isinstance(mirror, int) or isinstance(mirror, bool) or not 0 <= mirror <= MIRROR_MAX
        ):
            raise OptionError("mirror", mirror, f"must be 'auto' or an integer from 0 to {MIRROR_MAX} (pixels)")
        self.mirror = mirror
        self._margin = MIRROR_GRAPHICS if mirror == "auto" else mirror  # the widest frame on a side
        if precision not in DTYPES:
            raise OptionError("precision", precision, f"must be one of {sorted(DTYPES)}")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise OptionError(
                "precision", precision, "not supported on the CPU (slow, overflow-prone); use bf16 or fp32"
            )
        net = model if isinstance(model, nn.Module) else load_model(model)
        if not isinstance(net, SeemoRe):
            raise TypeError("model must be a SeemoRe network")
        if net is model:  # the caller's module: left as it is (mode, device), we hold a copy
            net = copy.deepcopy(net)
        self.model = net.eval().requires_grad_(False).to(self.device)
        self.config = net.config
        self.scale = net.config.scale
        self.fallback: PrecisionFallback | None = None  # the precision asked for, where it does not run
        if precision == "bf16" and self.device.type == "cpu" and not force_precision:
            self.fallback = _bf16_fallback()
            precision = "fp32" if self.fallback else precision
        self.precision = precision
        self.dtype = DTYPES[precision]
        if backend not in ("torch", "onnxruntime"):
            raise OptionError("backend", backend, "must be torch or onnxruntime")
        self.backend = backend
        if backend == "onnxruntime":
            if self.device.type != "cpu" or precision != "fp32":
                raise OptionError("backend", backend, "onnxruntime runs on the CPU in fp32")
            from .export import onnx_runner

            self.fast: nn.Module = onnx_runner(net)
            self.executor = "onnxruntime"
        else:
            from .fast import optimize

            self.fast = optimize(self.model, executor=executor)
            self.executor = getattr(self.fast, "executor", type(self.fast).__name__)

    # ------------------------------------------------------------------ tiles
    def tile_for(self, h: int, w: int, tile: int | str = "auto") -> int:
        """Tile side for an ``h x w`` input (0: untiled).

        Tiles are exact, so "auto" picks by speed and memory. CPU: 256-pixel tiles above
        512x512 input pixels (faster than a whole-image pass there: the working set stays
        in cache and small buffers are reused; ``benchmarks/bench_tiling.py``, README).
        GPU: whole images while they fit in a quarter of free memory, else 512. The
        onnxruntime graph runs whole images (its routing lives in the graph).
        """
        if self.backend == "onnxruntime":
            return 0
        if tile != "auto":
            return int(tile)
        h, w = h + 2 * self._margin, w + 2 * self._margin
        f = self.config.min_size
        pixels = max(h, f) * max(w, f)  # what the network computes on: thin images are padded
        if self.device.type == "cpu":
            return 256 if pixels > 512 * 512 else 0
        c = self.config.embedding_dim
        per_pixel = 4 * (10 * c + 2 * 3 * self.scale**2)  # activations alive in one group + output
        if pixels * per_pixel < available_bytes(self.device) // 4:
            return 0
        return 512

    def tiled(self, h: int, w: int, tile: int | str = "auto") -> int:
        """The tile side used for an ``h x w`` input, 0 when it runs whole (one tile or none).

        Tiles go by area (:func:`~seemore_sr.inference.tiling.tile_shape`): ``tile x tile``
        pixels each, so a 65536 x 1 strip runs in tiles of a 256 x 256 tile's working set
        (plus the whole-image feature maps every tiled run keeps).
        """
        t = self.tile_for(h, w, tile)
        h, w = h + 2 * self._margin, w + 2 * self._margin
        return t if t and tile_count(h, w, t, self.config.min_size) > 1 else 0

    def steps(self, h: int, w: int, tile: int) -> int:
        """How many progress steps a tiled run of an ``h x w`` input reports (with ``mirror``
        "auto": at most; a run reports its own count as the total)."""
        return tile_steps(self.model, h + 2 * self._margin, w + 2 * self._margin, tile)

    def frame(self, x: Tensor) -> Frame:
        """The pixels mirrored around ``x`` (top, bottom, left, right): ``mirror`` on every
        side, or with "auto" :data:`MIRROR_GRAPHICS` on the flat sides (:func:`flat_sides`)."""
        if self.mirror != "auto":
            return (self.mirror,) * 4
        depth = min(MIRROR_GRAPHICS, *x.shape[-2:])
        return tuple(MIRROR_GRAPHICS if flat else 0 for flat in flat_sides(x.float(), depth))

    # ------------------------------------------------------------------ running
    def __call__(self, x: Tensor) -> Tensor:
        return self.run(x)

    @torch.no_grad()
    def run(
        self,
        x: Tensor,
        *,
        tile: int | str = "auto",
        progress: Progress | None = None,
        sink=None,
        frame: Frame | None = None,
    ) -> Tensor | None:
        """``(N, C, H, W)`` float in [0, 1] -> ``(N, C, H*s, W*s)`` float32 in [0, 1] (on the CPU).

        ``progress(done, total)`` after each tile step (:meth:`steps` of them), or once for
        a whole-image pass. With ``sink`` (tiled runs only), output tiles are handed to
        ``sink(box, tile)`` as they are computed, clamped, and None is returned. ``frame``:
        the pixels mirrored around ``x`` for this call (default: :meth:`frame`).
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise OptionError("x", tuple(x.shape), f"expected (N, {self.config.in_chans}, H, W) for this network")
        h, w = x.shape[-2:]
        t = self.tiled(h, w, tile)
        if sink is not None and not t:
            raise OptionError("sink", sink, "for tiled runs only")
        x, s = x.float(), self.scale
        top, bottom, left, right = self.frame(x) if frame is None else frame
        if top or bottom or left or right:  # mirrored, computed, cropped: boxes and tiles in the image's own pixels
            x = mirror_pad(x, (top, bottom, left, right))
            if sink is not None:
                sink = _cropping(sink, (top * s, left * s), h * s, w * s)
        y = self._precise(x, t, progress, sink)
        return None if y is None else y[..., top * s : (top + h) * s, left * s : (left + w) * s].contiguous()

    def _precise(self, x: Tensor, t: int, progress: Progress | None, sink) -> Tensor | None:
        """The pass in the engine's precision (fp16 checked, and run again in fp32 on overflow)."""
        if self.dtype == torch.float16:  # fp16 only where it does not overflow: checked on every output
            try:
                return self._run(x, t, torch.float16, progress, sink)
            except _NonFinite:
                warnings.warn("fp16 overflowed on this image (inf/NaN in the output); ran it in fp32", stacklevel=3)
        elif self.dtype != torch.float32:
            return self._run(x, t, self.dtype, progress, sink)
        if self.device.type == "cuda":
            from .fast import exact_cudnn

            with exact_cudnn():
                return self._run(x, t, torch.float32, progress, sink)
        return self._run(x, t, torch.float32, progress, sink)

    def _run(self, x: Tensor, tile: int, dtype: torch.dtype, progress: Progress | None, sink) -> Tensor | None:
        autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)
        check = dtype == torch.float16
        if not tile:
            with autocast:
                y = self.fast(x.to(self.device))
            want = (*x.shape[:2], x.shape[2] * self.scale, x.shape[3] * self.scale)
            if tuple(y.shape) != want:  # a backend is checked, not trusted (a foreign cached graph)
                raise Refused(
                    f"the {self.executor} backend gave {tuple(y.shape)} for a x{self.scale} upscale of "
                    f"{tuple(x.shape)}; not used"
                )
            if progress is not None:
                progress(1, 1)
            return _finite(y.float(), check).clamp_(0, 1).cpu()
        step = None
        if progress is not None:
            total, done = tile_steps(self.model, *x.shape[-2:], tile), 0  # x is mirrored already
            progress(0, total)

            def step() -> None:
                nonlocal done
                done += 1
                progress(done, total)

        inner = sink
        if sink is not None:

            def sink(box, t: Tensor) -> None:
                inner(box, _finite(t.float(), check).clamp_(0, 1).cpu())

        with autocast:  # x stays where it is; tiles go to the device one at a time
            y = tiled_forward(self.fast, x, tile, step, sink=sink)
        return None if y is None else _finite(y.float(), check).clamp_(0, 1).cpu()


def _cropping(sink, off: tuple[int, int], h: int, w: int):
    """``sink`` for output tiles of the mirrored image: each tile's part inside the image,
    its box in the image's own pixels (``off``: the frame's top and left widths, ``h x w``
    the image's size; output pixels)."""
    oy, ox = off

    def crop(box, t: Tensor) -> None:
        y0, y1 = max(box[0], oy), min(box[1], oy + h)
        x0, x1 = max(box[2], ox), min(box[3], ox + w)
        if y0 < y1 and x0 < x1:
            part = t[..., y0 - box[0] : y1 - box[0], x0 - box[2] : x1 - box[2]]
            sink((y0 - oy, y1 - oy, x0 - ox, x1 - ox), part)

    return crop


def _finite(y: Tensor, check: bool) -> Tensor:
    if check and not bool(torch.isfinite(y).all()):
        raise _NonFinite
    return y
