"""Tiled inference that gives the untiled result.

SeemoRe has two non-local operations: the router averages its input over the whole
image, and ``calibrate`` adds a context map pooled 4**recursive times. Tiling the
whole network would let every tile pick its own experts (visible seams). Instead the
network is run group by group over the whole image: per group, a first sweep over
tiles accumulates the router's global mean and the context branch's input, the
routing and context are then decided once for the whole image, and a second sweep
computes the group tile by tile, each tile with a halo wide enough for every local
op. The result equals the untiled forward up to float summation order.

Memory: activations inside a block are bounded by the tile; three feature maps at
the input's resolution (C channels each: the features, the next features and the
context branch) are kept for the whole image, about 0.43 KB per input pixel for
SeemoRe-T, beside the output itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.seemore import ResGroup, SeemoRe, route

__all__ = ["tiled_forward", "tile_slices"]


Box = tuple[int, int, int, int]  # y0, y1, x0, x1


def tile_slices(size: int, tile: int) -> Iterator[tuple[int, int]]:
    for start in range(0, size, tile):
        yield start, min(start + tile, size)


def _tiles(h: int, w: int, tile: int, halo: int) -> Iterator[tuple[Box, Box]]:
    """``(core, with_halo)`` boxes covering an ``h x w`` map."""
    for y0, y1 in tile_slices(h, tile):
        for x0, x1 in tile_slices(w, tile):
            yield (y0, y1, x0, x1), (max(y0 - halo, 0), min(y1 + halo, h), max(x0 - halo, 0), min(x1 + halo, w))


def _sweep(src: Tensor, tile: int, halo: int, fn: Callable[[Tensor, Box], Tensor], scale: int = 1):
    """Yield ``(core box, fn's output cropped to the core)`` for every tile of ``src``."""
    h, w = src.shape[-2:]
    for (y0, y1, x0, x1), (ya, yb, xa, xb) in _tiles(h, w, tile, halo):
        out = fn(src[..., ya:yb, xa:xb], (ya, yb, xa, xb))
        s = scale
        yield (y0, y1, x0, x1), out[..., (y0 - ya) * s : (y1 - ya) * s, (x0 - xa) * s : (x1 - xa) * s]


def _group(group: ResGroup, feat: Tensor, nxt: Tensor, kmap: Tensor, tile: int, kernel: int) -> None:
    """One residual group over the whole image, tile by tile: ``feat`` is updated in place."""
    rme, sme, blk = group.local_block, group.global_block, group.local_block.block
    n, c, H, W = feat.shape

    # sweep 1: the router's global mean, and the context branch's input k
    def branch(t: Tensor, _: Box) -> Tensor:
        a, k = blk.split(rme.norm_1(t))
        return torch.cat([blk.conv_2(a), k], 1)

    total = torch.zeros(n, c, device=feat.device, dtype=torch.float64)
    for (y0, y1, x0, x1), core in _sweep(feat, tile, 2, branch):
        total += core[:, :c].double().sum((-2, -1))
        kmap[..., y0:y1, x0:x1] = core[:, c:]
    mean = (total / (H * W)).to(feat.dtype)
    routing = route(blk.moe_layer.gate.body[2](mean), blk.moe_layer.topk, feat.dtype)
    ctx = blk.context(kmap)
    for c0 in range(0, c, 4):  # a few channels at a time: no full-size temporary
        kmap[:, c0 : c0 + 4] += F.interpolate(ctx[:, c0 : c0 + 4], size=(H, W), mode="bilinear", align_corners=False)

    # sweep 2: RME with the whole image's routing and context
    def rme_tile(t: Tensor, box: Box) -> Tensor:
        k = kmap[..., box[0] : box[1], box[2] : box[3]]
        a, _ = blk.split(rme.norm_1(t))
        z = blk.proj(blk.moe_layer(blk.conv_2(a), k, routing)) + t
        return rme.ffn(rme.norm_2(z)) + z

    for (y0, y1, x0, x1), core in _sweep(feat, tile, 3, rme_tile):
        nxt[..., y0:y1, x0:x1] = core
    # sweep 3: SME, purely local
    for (y0, y1, x0, x1), core in _sweep(nxt, tile, kernel // 2 + 2, lambda t, _: sme(t)):
        feat[..., y0:y1, x0:x1] = core


@torch.no_grad()
def tiled_forward(model: SeemoRe, x: Tensor, tile: int, progress: Callable[[], None] | None = None) -> Tensor:
    """``model(x)`` computed ``tile x tile`` input pixels at a time (eval mode), same result.

    ``progress`` is called once per residual group and once at the end.
    """
    cfg = model.config
    h, w = x.shape[-2:]
    ph, pw = model.pad_amount(h, w)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    H, W = x.shape[-2:]
    n, c, s = x.shape[0], cfg.embedding_dim, cfg.scale
    tile = max(tile, 8)
    feat = x.new_empty(n, c, H, W)
    for (y0, y1, x0, x1), core in _sweep(x, tile, 1, lambda t, _: model.head(t)):
        feat[..., y0:y1, x0:x1] = core
    nxt, kmap = torch.empty_like(feat), torch.empty_like(feat)
    for group in model.body:
        _group(group, feat, nxt, kmap, tile, cfg.global_kernel_size)
        if progress is not None:
            progress()
    del nxt, kmap
    out = x.new_empty(n, cfg.in_chans, H * s, W * s)

    def tail(t: Tensor, box: Box) -> Tensor:  # the global skip is recomputed, not stored
        return model.tail(t, model.head(x[..., box[0] : box[1], box[2] : box[3]]))

    for (y0, y1, x0, x1), core in _sweep(feat, tile, 3, tail, scale=s):
        out[..., y0 * s : y1 * s, x0 * s : x1 * s] = core
    if progress is not None:
        progress()
    return out[..., : h * s, : w * s]
