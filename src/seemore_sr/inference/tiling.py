"""Tiled inference that gives the untiled result, in memory bounded by the tile.

SeemoRe has two non-local operations: the router averages its input over the whole
image, and ``calibrate`` adds a context map pooled 4**recursive times. Tiling the
whole network would let every tile pick its own experts (visible seams). Instead the
network is run group by group over the whole image, in two sweeps over the tiles:

1. each tile (with a 2-pixel halo) gives its share of the router's global mean and
   of the pooled context (tiles start on multiples of 4**recursive, so the strided
   pooling of a tile is exactly its part of the whole image's); the routing and the
   small context map are then decided once for the whole image;
2. each tile, with a halo wide enough for every local operation of the group, is run
   through the group with that routing and context (bilinearly resized for just the
   tile's rows and columns, with the whole image's coordinates).

The result equals the untiled forward up to float summation order (~1e-6).

Memory: inside a group, activations are bounded by the tile. Between groups the
features of the whole image must be kept (the next router needs all of them): two
C-channel maps at the input's resolution (0.29 KB per input pixel for SeemoRe-T).
They stay on the GPU when they fit in a quarter of its free memory, in RAM up to
1 GiB (and a quarter of free RAM), and otherwise go to a temporary file (``$TMPDIR``;
``spill=True`` forces it), so the process's memory grows with the tile, not the
image. The file is read and written through the page cache, so it costs little time
when RAM is free, and the kernel can write it out when RAM is not. The output goes tile by tile to
``sink`` when one is given (``Upscaler`` writes 8/16-bit images this way), otherwise
into one tensor.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..models.folded import FoldedGroup, fold
from ..models.seemore import SeemoRe, SeemoReConfig, pad_to_min
from ..models.stages import GroupStages, NetworkStages
from .cuda_graphs import CudaGraphed

__all__ = [
    "tiled_forward",
    "tile_slices",
    "tile_shape",
    "tile_count",
    "tile_steps",
    "group_halo",
    "map_bytes",
    "available_bytes",
]


Box = tuple[int, int, int, int]  # y0, y1, x0, x1
Sink = Callable[[Box, Tensor], None]  # output box (output pixels), tile output (N, C, h, w)


def tile_slices(size: int, tile: int) -> Iterator[tuple[int, int]]:
    for start in range(0, size, tile):
        yield start, min(start + tile, size)


def _tiles(h: int, w: int, shape: tuple[int, int], halo: int) -> Iterator[tuple[Box, Box]]:
    """``(core, with_halo)`` boxes of ``shape`` (rows, columns) covering an ``h x w`` map."""
    for y0, y1 in tile_slices(h, shape[0]):
        for x0, x1 in tile_slices(w, shape[1]):
            yield (y0, y1, x0, x1), (max(y0 - halo, 0), min(y1 + halo, h), max(x0 - halo, 0), min(x1 + halo, w))


def _crop(t: Tensor, core: Box, outer: Box, scale: int = 1) -> Tensor:
    """The ``core`` part of an NCHW tile computed over ``outer``."""
    (y0, y1, x0, x1), (ya, _, xa, _), s = core, outer, scale
    return t[..., (y0 - ya) * s : (y1 - ya) * s, (x0 - xa) * s : (x1 - xa) * s]


def _crop_nhwc(t: Tensor, core: Box, outer: Box) -> Tensor:
    (y0, y1, x0, x1), (ya, _, xa, _) = core, outer
    return t[:, y0 - ya : y1 - ya, x0 - xa : x1 - xa, :]


# The whole-image maps are NHWC; a network's stages take NHWC (channels_last) or NCHW.
def _from_map(t: Tensor, cl: bool) -> Tensor:
    return t if cl else t.permute(0, 3, 1, 2)


def _to_map(t: Tensor, cl: bool) -> Tensor:
    return t if cl else t.permute(0, 2, 3, 1)


def _crop_as(t: Tensor, core: Box, outer: Box, cl: bool) -> Tensor:
    return _crop_nhwc(t, core, outer) if cl else _crop(t, core, outer)


def _round_tile(tile: int, f: int) -> int:
    return max(f, -(-tile // f) * f)  # a multiple of 4**recursive: exact pooled context per tile


def group_halo(config: SeemoReConfig) -> int:
    """Context pixels one residual group of ``config`` needs around a tile, as its folded
    blocks declare them (``FoldedGroup.halo``: RME's 3x3 conv, striped conv and FFN gate, 3;
    SME's striped conv, ``global_kernel_size // 2``, and FFN gate, 1; one spare): 10 for the
    released kernel of 11. Tiling reads each group's own ``halo``; this is its value for a
    config, without building one."""
    return 3 + config.global_kernel_size // 2 + 1 + FoldedGroup.SPARE


def tile_shape(h: int, w: int, tile: int, f: int) -> tuple[int, int]:
    """Rows and columns of the tiles for an ``h x w`` input (padded to ``f``): tiles by area.

    A tile holds about ``tile x tile`` pixels, both sides multiples of ``f``
    (``4**recursive``); a side shorter than ``tile`` gives its spare area to the other,
    so a 65536 x 1 image runs in 16 x 4096 tiles, not in 16 x 256 ones or whole.
    """
    t, hh, ww = _round_tile(tile, f), _round_tile(h, f), _round_tile(w, f)  # each at least f
    th, tw = min(hh, t), min(ww, t)
    if th < t:
        tw = min(ww, max(f, t * t // th // f * f))
    elif tw < t:
        th = min(hh, max(f, t * t // tw // f * f))
    return th, tw


def tile_count(h: int, w: int, tile: int, f: int) -> int:
    """How many tiles :func:`tiled_forward` cuts an ``h x w`` input into."""
    th, tw = tile_shape(h, w, tile, f)
    return -(-max(h, f) // th) * -(-max(w, f) // tw)


def tile_steps(model: nn.Module, h: int, w: int, tile: int) -> int:
    """How many times :func:`tiled_forward` calls ``progress`` for an ``h x w`` input."""
    return tile_count(h, w, tile, model.config.min_size) * (model.config.num_layers + 1)


def map_bytes(n: int, c: int, h: int, w: int) -> int:
    """Bytes of the whole-image feature maps kept between groups (two float32 maps)."""
    return 2 * 4 * n * c * h * w


# ----------------------------------------------------------------------------- storage


class _Map:
    """A whole-image float32 feature map, NHWC ``(N, H, W, C)``: a tensor, or a file on disk.

    On disk it is mapped only for the duration of each read or write, so its pages are
    page cache, not process memory.
    """

    def __init__(self, shape: tuple[int, int, int, int], device: torch.device, path: str | None) -> None:
        self.shape, self.device, self.path = shape, device, path
        if path is None:
            self.data = torch.empty(shape, device=device)
        else:
            with open(path, "wb") as f:
                f.truncate(4 * int(np.prod(shape)))

    def _mm(self, mode: str) -> np.memmap:
        return np.memmap(self.path, dtype=np.float32, mode=mode, shape=self.shape)

    def read(self, box: Box, device: torch.device) -> Tensor:
        y0, y1, x0, x1 = box
        if self.path is None:
            return self.data[:, y0:y1, x0:x1, :].to(device).contiguous()
        mm = self._mm("r")
        part = np.array(mm[:, y0:y1, x0:x1, :])
        del mm
        return torch.from_numpy(part).to(device)

    def write(self, box: Box, t: Tensor) -> None:
        y0, y1, x0, x1 = box
        if self.path is None:
            self.data[:, y0:y1, x0:x1, :] = t
            return
        mm = self._mm("r+")
        mm[:, y0:y1, x0:x1, :] = t.detach().float().cpu().numpy()
        del mm


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free device memory; else the OS's MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


RAM_LIMIT = 1 << 30  # whole-image maps above this (or a quarter of free RAM) go to disk


def _storage(n: int, c: int, h: int, w: int, device: torch.device, spill: bool | None) -> torch.device | None:
    """Where the whole-image maps live: ``device``, the CPU, or None for a file on disk."""
    need = map_bytes(n, c, h, w)
    if spill:
        return None
    if spill is False:
        return device
    if device.type != "cpu" and need < available_bytes(device) // 4:
        return device  # GPU memory: fast, and freed when the image is done
    if need < min(RAM_LIMIT, available_bytes(torch.device("cpu")) // 4):
        return torch.device("cpu")
    return None


# ----------------------------------------------------------------------------- context


def _bilinear_axis(out_size: int, in_size: int, start: int, stop: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights of ``F.interpolate(bilinear, align_corners=False)``
    along one axis, for output positions ``start..stop-1`` of the whole ``out_size``."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    dst = torch.arange(start, stop, dtype=torch.float32)
    src = (scale * (dst + 0.5) - 0.5).clamp_min(0)
    i0 = src.long().clamp_max(in_size - 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    l1 = src - i0
    return i0.to(device), i1.to(device), l1.to(device)


def _resize_part(ctx: Tensor, size: tuple[int, int], box: Box) -> Tensor:
    """The ``box`` part of ``F.interpolate(ctx, size, bilinear)``, computed for that part only."""
    (H, W), (ya, yb, xa, xb) = size, box
    i0, i1, l1 = _bilinear_axis(H, ctx.shape[-2], ya, yb, ctx.device)
    l1 = l1.to(ctx.dtype).view(-1, 1)
    rows = ctx[..., i0, :] * (1 - l1) + ctx[..., i1, :] * l1
    j0, j1, m1 = _bilinear_axis(W, ctx.shape[-1], xa, xb, ctx.device)
    m1 = m1.to(ctx.dtype)
    return rows[..., j0] * (1 - m1) + rows[..., j1] * m1


# ----------------------------------------------------------------------------- sweeps


def _group(g: GroupStages, src: _Map, dst: _Map, tile: tuple[int, int], f: int, halo: int, device, progress) -> None:
    """One residual group over the whole image, tile by tile: ``src`` features -> ``dst``."""
    n, H, W, c = src.shape
    cl = g.channels_last
    pooled = None
    total = torch.zeros(n, c, device=device, dtype=torch.float64)

    # sweep 1: the router's global mean and the pooled context, tile by tile
    for core, outer in _tiles(H, W, tile, 2):
        a, k = g.branches(_from_map(src.read(outer, device), cl))
        total += _crop_as(a, core, outer, cl).double().sum((1, 2) if cl else (2, 3))
        if pooled is None:
            pooled = k.new_zeros(n, c, H // f, W // f)
        if core[1] - core[0] < f or core[3] - core[2] < f:
            continue  # an edge strip narrower than the pooling: no pooled pixel of its own
        p = g.pool(_crop_as(k, core, outer, cl).contiguous())
        pooled[..., core[0] // f : core[0] // f + p.shape[-2], core[2] // f : core[2] // f + p.shape[-1]] = p
    routing = g.routing((total / (H * W)).to(pooled.dtype))
    ctx = g.context(pooled)

    # sweep 2: the rest of the group with the whole image's routing and context, per tile
    for core, outer in _tiles(H, W, tile, halo):
        t = _from_map(src.read(outer, device), cl)
        a, k = g.branches(t)
        part = _resize_part(ctx, (H, W), outer).to(k.dtype)
        k = k + (part.permute(0, 2, 3, 1) if cl else part)
        dst.write(core, _to_map(_crop_as(g.finish(t, a, k, routing), core, outer, cl), cl))
        if progress is not None:
            progress()


def _stages(model: nn.Module) -> NetworkStages:
    """The network the tiles run through: a folded network itself (NHWC on CPUs, NCHW),
    the one inside a CudaGraphed, or a reference SeemoRe folded here (NCHW)."""
    net = model.model if isinstance(model, CudaGraphed) else model
    if isinstance(net, SeemoRe):
        net = fold(net)
    if not isinstance(net, NetworkStages) or not all(isinstance(g, GroupStages) for g in net.groups):
        raise TypeError(f"tiled_forward needs a SeemoRe network or its folded form, got {type(model).__name__}")
    return net


@torch.no_grad()
def tiled_forward(
    model: nn.Module,
    x: Tensor,
    tile: int,
    progress: Callable[[], None] | None = None,
    *,
    sink: Sink | None = None,
    spill: bool | None = None,
) -> Tensor | None:
    """``model(x)`` computed about ``tile x tile`` input pixels at a time (eval mode; tiles by
    area, :func:`tile_shape`), same result.

    ``model``: a folded network (:mod:`seemore_sr.models.folded`; NHWC on CPUs, NCHW
    with cuDNN on GPUs), a CudaGraphed (the folded network inside it), or a SeemoRe
    (folded here, NCHW), in eval mode.

    ``x`` may live on the CPU while ``model`` is on a GPU: tiles are moved one at a time.
    ``progress`` is called once per tile and pass (:func:`tile_steps` of them). With ``sink``,
    each output tile is handed to ``sink(box, tile)`` (box in output pixels, already
    cropped to the output's size) and None is returned; otherwise the output tensor.
    ``spill``: keep the whole-image feature maps in a temporary file (True), in memory
    (False), or decide from free memory (None).
    """
    net = _stages(model)
    cfg = net.config
    cl = net.groups[0].channels_last
    device = net.mean.device
    h, w = x.shape[-2:]
    x = pad_to_min(x, cfg.min_size)
    H, W = x.shape[-2:]
    n, c, s, f = x.shape[0], cfg.embedding_dim, cfg.scale, cfg.min_size
    tile_hw = tile_shape(H, W, tile, f)
    where = _storage(n, c, H, W, device, spill)
    out = None
    if sink is None:
        out = x.new_empty(n, cfg.in_chans, h * s, w * s)

        def sink(box: Box, t: Tensor) -> None:
            out[..., box[0] : box[1], box[2] : box[3]] = t

    with tempfile.TemporaryDirectory(prefix="seemore-tiles-") as tmp:
        maps = [
            _Map((n, H, W, c), device, os.path.join(tmp, f"features{i}.f32"))
            if where is None
            else _Map((n, H, W, c), where, None)
            for i in range(2)
        ]
        for core, outer in _tiles(H, W, tile_hw, 1):
            t = x[..., outer[0] : outer[1], outer[2] : outer[3]].to(device)
            maps[0].write(core, _to_map(_crop_as(net.head(t), core, outer, cl), cl))
        for g in net.groups:
            _group(g, maps[0], maps[1], tile_hw, f, g.halo, device, progress)  # the group's own declaration
            maps.reverse()
        for core, outer in _tiles(H, W, tile_hw, 3):
            res = net.head(x[..., outer[0] : outer[1], outer[2] : outer[3]].to(device))  # recomputed, not stored
            y = _crop(net.tail(_from_map(maps[0].read(outer, device), cl), res), core, outer, s)
            y0, y1, x0, x1 = (v * s for v in core)
            y1, x1 = min(y1, h * s), min(x1, w * s)
            if y1 > y0 and x1 > x0:
                sink((y0, y1, x0, x1), y[..., : y1 - y0, : x1 - x0])
            if progress is not None:
                progress()
    return out
