"""SeemoRe's inference form: every block folded, written once for any executor.

:func:`fold` turns the reference
network (:mod:`.seemore`) into a :class:`FoldedSeemoRe`: the same function (within
~1e-6; only the order of float operations changes), with the training form's detours
folded into the weights, the way timm's ``reparameterize()`` folds a block's branches:

- every "1x1 conv, then split in halves" is two 1x1 convs that write the halves (RME's
  ``conv_1``, the FFNs' ``fn_1``, SME's ``to_qv``), with RME's channel shuffle applied to
  the weight rows: no shuffle, no split;
- a LayerNorm's affine is folded into the 1x1 conv after it (``norm_2`` of RME and SME,
  SME's ``norm_1``); it stays where a zero-padded 3x3 conv follows (RME's ``norm_1``),
  since folding its bias there would change the padding;
- a MoE layer's experts are one low-rank product, their ranks side by side: run sparse
  (only each image's chosen experts, a slice of it each) or dense (all ranks at once,
  each image's routing weight spread over its expert's rank channels, 0 for the others:
  a static graph for ONNX export and CUDA graphs).

Each folded class below is the inference form of one reference block, built from it by
``of(block)``; this file is the only place their arithmetic is written. *How* an
operation runs (NCHW convolutions, or NHWC GEMMs with oneDNN's fused post-ops) is the
executor's: an :class:`Ops` object the network is folded for. :class:`Ops` here is plain
PyTorch on NCHW tensors (any device, traceable for ONNX, capturable as CUDA graphs);
:class:`~seemore_sr.inference.nhwc.NHWCOps` runs the same calls on NHWC tensors on CPUs.

A residual group exposes the stages that tiled inference needs (:mod:`.stages`), cut at
its two whole-image operations (the router's mean, ``calibrate``'s pooling).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .seemore import (
    RME,
    SME,
    GatedFFN,
    LayerNorm,
    MoELayer,
    ResGroup,
    SeemoRe,
    dense_mix,
    pad_to_min,
    route,
)

__all__ = ["fold", "Ops", "FoldedSeemoRe", "FoldedGroup", "FoldedRME", "FoldedSME", "FoldedFFN", "FoldedMoE"]


# ----------------------------------------------------------------------------- executor


class Ops:
    """How the folded network's operations run: plain PyTorch on NCHW tensors.

    ``linear`` is a 1x1 conv given as a matrix ``w [out, in]`` and bias ``b [out]``;
    ``conv`` a spatial conv module (3x3, striped, depthwise, strided). Subclasses change
    the layout and kernels, never the arithmetic.
    """

    channels_last = False  # feature maps are NCHW (their memory may be channels_last, below)

    def __init__(self, memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.memory_format = memory_format
        self.name = "nchw-cl" if memory_format == torch.channels_last else "nchw"

    def linear(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        *,
        gelu: bool = False,
        add: Tensor | None = None,
        mul: Tensor | None = None,
    ) -> Tensor:
        """``gelu?(x @ w.T + b) (+ add) (* mul)`` over the channels of ``x``."""
        y = F.conv2d(x, w[:, :, None, None], b)
        if gelu:
            y = F.gelu(y)
        if add is not None:
            y = y + add
        return y if mul is None else y * mul

    def conv(self, x: Tensor, conv: nn.Conv2d, *, gelu: bool = False, mul: Tensor | None = None) -> Tensor:
        """``gelu?(conv(x)) (* mul)``."""
        y = conv(x)
        if gelu:
            y = F.gelu(y)
        return y if mul is None else y * mul

    def norm(self, x: Tensor, w: Tensor | None = None, b: Tensor | None = None, eps: float = 1e-6) -> Tensor:
        """LayerNorm over the channels (biased variance), with the affine if given."""
        d = x - x.mean(1, keepdim=True)
        y = d / torch.sqrt((d * d).mean(1, keepdim=True) + eps)
        if w is not None:
            y = y * w[:, None, None]
        return y if b is None else y + b[:, None, None]

    def per_image(self, v: Tensor) -> Tensor:
        """``[N, C]`` values as a map broadcasting over each image's pixels."""
        return v[:, :, None, None]

    def spatial_mean(self, x: Tensor) -> Tensor:
        return x.mean((2, 3))

    def from_nchw(self, x: Tensor) -> Tensor:
        """An NCHW map in this layout (and memory format: later ops keep it)."""
        return x.contiguous(memory_format=self.memory_format)

    def to_nchw(self, x: Tensor) -> Tensor:
        """A map of this layout seen as NCHW (a view where the layout allows)."""
        return x

    def add_resized(self, ctx: Tensor, k: Tensor) -> Tensor:
        """``k + bilinear(ctx)`` (``ctx`` NCHW, resized to ``k``'s size, align_corners=False)."""
        return k + F.interpolate(ctx, size=k.shape[-2:], mode="bilinear", align_corners=False)


def _matrix(conv: nn.Conv2d, rows: slice | Tensor = slice(None)) -> tuple[Tensor, Tensor]:
    """A 1x1 conv's ``(weight [out, in], bias [out])``, the rows asked for."""
    return conv.weight.detach()[:, :, 0, 0][rows].clone(), conv.bias.detach()[rows].clone()


def _fold_affine(norm: LayerNorm, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``linear(norm's affine(y))`` as ``linear'(y)``: its weight and bias."""
    return w * norm.weight.detach()[None, :], b + w @ norm.bias.detach()


class _Folded(nn.Module):
    """A folded block: its matrices are buffers (``name_w``, ``name_b``), its spatial convs
    the reference's modules (shared, not copied: folding leaves them unchanged)."""

    def __init__(self, ops: Ops) -> None:
        super().__init__()
        self.ops = ops

    def _set(self, name: str, w: Tensor, b: Tensor | None) -> None:
        self.register_buffer(f"{name}_w", w.contiguous())
        self.register_buffer(f"{name}_b", None if b is None else b.contiguous())

    def lin(self, x: Tensor, name: str, *, gelu: bool = False, add: Tensor | None = None) -> Tensor:
        return self.ops.linear(x, getattr(self, f"{name}_w"), getattr(self, f"{name}_b"), gelu=gelu, add=add)


# ----------------------------------------------------------------------------- blocks


class FoldedFFN(_Folded):
    """A pre-norm :class:`~seemore_sr.models.seemore.GatedFFN` with its residual:
    ``x + gelu(fn_2(gelu(a) * gate(gelu(g))))``, ``a`` and ``g`` the halves of ``fn_1``
    applied to ``norm(x)``; the norm's affine folded into both halves."""

    @classmethod
    def of(cls, norm: LayerNorm, ffn: GatedFFN, ops: Ops) -> FoldedFFN:
        self = cls(ops)
        w, b = _matrix(ffn.fn_1[0])
        c = w.shape[1]
        self._set("a", *_fold_affine(norm, w[:c], b[:c]))
        self._set("g", *_fold_affine(norm, w[c:], b[c:]))
        self.gate = ffn.gate
        self._set("out", *_matrix(ffn.fn_2[0]))
        self.eps = norm.eps
        return self

    @property
    def halo(self) -> int:
        """Pixels of context it needs around a tile: its depthwise gate's reach."""
        return _reach(self.gate)

    def forward(self, x: Tensor) -> Tensor:
        h = self.ops.norm(x, eps=self.eps)
        a, g = self.lin(h, "a", gelu=True), self.lin(h, "g", gelu=True)
        return self.lin(self.ops.conv(g, self.gate, mul=a), "out", gelu=True, add=x)


class FoldedSME(_Folded):
    """:class:`~seemore_sr.models.seemore.SME`: ``x + proj(striped(q) * v)`` with ``q, v``
    the GELU'd halves of ``to_qv(norm_1(x))`` (affine folded), then the gated FFN."""

    @classmethod
    def of(cls, sme: SME, ops: Ops) -> FoldedSME:
        self = cls(ops)
        w, b = _matrix(sme.block.to_qv[0])
        c = w.shape[1]
        self._set("q", *_fold_affine(sme.norm_1, w[:c], b[:c]))
        self._set("v", *_fold_affine(sme.norm_1, w[c:], b[c:]))
        self.stripe = sme.block.attn.conv  # (1 x k) then (k x 1), depthwise
        self._set("proj", *_matrix(sme.block.proj))
        self.ffn = FoldedFFN.of(sme.norm_2, sme.ffn, ops)
        self.eps = sme.norm_1.eps
        return self

    @property
    def halo(self) -> int:
        """The striped conv's reach (1 x k then k x 1: k // 2 each way), then the FFN's."""
        return _reach(*self.stripe) + self.ffn.halo

    def forward(self, x: Tensor) -> Tensor:
        h = self.ops.norm(x, eps=self.eps)
        q, v = self.lin(h, "q", gelu=True), self.lin(h, "v", gelu=True)
        attn = self.ops.conv(self.ops.conv(q, self.stripe[0]), self.stripe[1], mul=v)
        return self.ffn(self.lin(attn, "proj", add=x))


class FoldedMoE(_Folded):
    """:class:`~seemore_sr.models.seemore.MoELayer` (MoRE): ``a + sum_j w_j conv_3j(conv_1j(a) *
    conv_2j(k))`` over each image's chosen experts ``j``. The experts' ``conv_1`` / ``conv_2``
    rows and ``conv_3`` columns are stacked (``low_x``, ``low_k``, ``up``); expert ``j`` owns
    ranks ``offsets[j]:offsets[j+1]``."""

    @classmethod
    def of(cls, moe: MoELayer, ops: Ops, *, dense: bool) -> FoldedMoE:
        self = cls(ops)
        experts = moe.experts
        self._set("low_x", *(torch.cat(t) for t in zip(*(_matrix(e.conv_1) for e in experts), strict=True)))
        self._set("low_k", *(torch.cat(t) for t in zip(*(_matrix(e.conv_2) for e in experts), strict=True)))
        up = [_matrix(e.conv_3) for e in experts]
        self._set("up", torch.cat([w for w, _ in up], 1), None)
        self.register_buffer("up_bias", torch.stack([b for _, b in up]))  # [experts, C]
        ranks = [e.conv_1.out_channels for e in experts]
        self.offsets = [sum(ranks[:j]) for j in range(len(ranks) + 1)]
        spread = torch.zeros(len(ranks), self.offsets[-1])  # expert -> its rank channels
        for j in range(len(ranks)):
            spread[j, self.offsets[j] : self.offsets[j + 1]] = 1
        self.register_buffer("spread", spread)
        self.router = moe.gate.body[2]  # the router's linear layer (forward hooks see its logits)
        self.topk, self.dense = moe.topk, dense
        return self

    def routing(self, mean: Tensor) -> tuple[Tensor, Tensor]:
        """``(weights [N, k], experts [N, k])`` from the ``[N, C]`` spatial mean of ``a``."""
        return route(self.router(mean), self.topk, mean.dtype)

    def forward(self, a: Tensor, k: Tensor, routing: tuple[Tensor, Tensor]) -> Tensor:
        weights, chosen = routing
        ops = self.ops
        if self.dense:
            mix = dense_mix(weights, chosen, len(self.offsets) - 1)
            low = self.lin(a, "low_x") * self.lin(k, "low_k") * ops.per_image(mix @ self.spread)
            return self.lin(low, "up", add=a) + ops.per_image(mix @ self.up_bias)
        out = a
        for j in range(len(self.offsets) - 1):
            hit = chosen == j  # [N, k]
            rows = hit.any(1).nonzero().flatten()
            if rows.numel() == 0:
                continue
            r = slice(self.offsets[j], self.offsets[j + 1])
            w = (weights[rows] * hit[rows]).sum(1)
            every = rows.numel() == a.shape[0]
            xa, xk = (a, k) if every else (a[rows], k[rows])
            low = ops.linear(xk, self.low_k_w[r], self.low_k_b[r], mul=ops.linear(xa, self.low_x_w[r], self.low_x_b[r]))
            up_w, up_b = self.up_w[:, r], self.up_bias[j]
            if every and a.shape[0] == 1:  # one image: its weight folded into the last GEMM
                out = ops.linear(low, up_w * w, up_b * w, add=out)
                continue
            e = ops.linear(low, up_w.contiguous(), up_b) * ops.per_image(w[:, None].to(low.dtype))
            out = out + e if every else out.index_add(0, rows, e.to(out.dtype))
        return out


class FoldedRME(_Folded):
    """:class:`~seemore_sr.models.seemore.RME`, as the stages of :mod:`.stages`:

    - ``branches``: ``norm_1`` (affine kept), the 3x3 conv + GELU, the two halves of the
      1x1 conv (shuffle folded): ``a`` through the striped conv + GELU, and ``k``;
    - ``pool`` / ``context``: ``calibrate``'s strided depthwise pooling (NCHW out) and its
      convs at low resolution; the caller adds it, resized, to ``k``;
    - ``routing``: the router's decision from the spatial mean of ``a``;
    - ``finish``: MoRE, ``proj`` and the residual, then the gated FFN.
    """

    @classmethod
    def of(cls, rme: RME, ops: Ops, *, dense: bool) -> FoldedRME:
        self = cls(ops)
        mixer = rme.block
        c = mixer.proj.out_channels
        self.register_buffer("norm_w", rme.norm_1.weight.detach().clone())
        self.register_buffer("norm_b", rme.norm_1.bias.detach().clone())
        self.eps = rme.norm_1.eps
        self.conv_3x3 = mixer.conv_1[0]
        order = torch.arange(2 * c)
        if mixer.use_shuffle:  # [2, C] -> [C, 2]: channel i of the shuffled map is channel order[i]
            order = order.view(2, c).t().reshape(-1)
        self._set("x", *_matrix(mixer.conv_1[2], order[:c]))
        self._set("k", *_matrix(mixer.conv_1[2], order[c:]))
        self.stripe = mixer.conv_2[0].conv
        self.agg, self.recursive = mixer.agg_conv[0], mixer.recursive
        self.context_convs = mixer.conv  # depthwise 3x3, then 1x1 (NCHW, at 1 / 4**recursive)
        self.moe = FoldedMoE.of(mixer.moe_layer, ops, dense=dense)
        self._set("proj", *_matrix(mixer.proj))
        self.ffn = FoldedFFN.of(rme.norm_2, rme.ffn, ops)
        return self

    @property
    def halo(self) -> int:
        """The 3x3 conv's reach, then the striped conv on ``a`` (``k`` reaches less), then the
        FFN's; the context is computed from the whole pooled map, not per tile."""
        return _reach(self.conv_3x3) + _reach(*self.stripe) + self.ffn.halo

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ops = self.ops
        h = ops.conv(ops.norm(x, self.norm_w, self.norm_b, self.eps), self.conv_3x3, gelu=True)
        a, k = self.lin(h, "x"), self.lin(h, "k")
        return ops.conv(ops.conv(a, self.stripe[0]), self.stripe[1], gelu=True), k

    def pool(self, k: Tensor) -> Tensor:
        p = self.ops.to_nchw(k)
        for _ in range(self.recursive):
            p = F.gelu(self.agg(p))
        return p

    def context(self, pooled: Tensor) -> Tensor:
        return self.context_convs(pooled)

    def routing(self, mean: Tensor) -> tuple[Tensor, Tensor]:
        return self.moe.routing(mean)

    def finish(self, x: Tensor, a: Tensor, k: Tensor, routing: tuple[Tensor, Tensor]) -> Tensor:
        return self.ffn(self.lin(self.moe(a, k, routing), "proj", add=x))


class FoldedGroup(nn.Module):
    """:class:`~seemore_sr.models.seemore.ResGroup`: RME, then SME; the stages of
    :mod:`.stages` (RME's, with SME run at the end of ``finish``)."""

    def __init__(self, group: ResGroup, ops: Ops, *, dense: bool) -> None:
        super().__init__()
        self.ops = ops
        self.channels_last = ops.channels_last
        self.rme = FoldedRME.of(group.local_block, ops, dense=dense)
        self.sme = FoldedSME.of(group.global_block, ops)

    SPARE = 1  # one pixel beyond what the blocks declare, as the tiling has always kept (exactness is tested)

    @property
    def halo(self) -> int:
        """Context pixels the group needs around a tile: what its blocks declare, summed."""
        return self.rme.halo + self.sme.halo + self.SPARE

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.rme.branches(x)

    def pool(self, k: Tensor) -> Tensor:
        return self.rme.pool(k)

    def context(self, pooled: Tensor) -> Tensor:
        return self.rme.context(pooled)

    def routing(self, mean: Tensor) -> tuple[Tensor, Tensor]:
        return self.rme.routing(mean)

    def finish(self, x: Tensor, a: Tensor, k: Tensor, routing: tuple[Tensor, Tensor]) -> Tensor:
        return self.sme(self.rme.finish(x, a, k, routing))

    def forward(self, x: Tensor) -> Tensor:
        a, k = self.branches(x)
        k = self.ops.add_resized(self.context(self.pool(k)), k)
        return self.finish(x, a, k, self.routing(self.ops.spatial_mean(a)))


class FoldedSeemoRe(nn.Module):
    """A :class:`~seemore_sr.models.seemore.SeemoRe` folded for inference (module docstring);
    same call contract, eval only. Shares the reference's spatial convs, so fold a copy
    of a network that is still training (:func:`fold` does)."""

    def __init__(self, net: SeemoRe, ops: Ops | None = None, *, dense: bool = False) -> None:
        super().__init__()
        self.ops = ops = ops or Ops()
        self.config = cfg = net.config
        self.dense = dense
        self.register_buffer("mean", net.mean.detach().clone(), persistent=False)
        self.conv_1, self.conv_2 = net.conv_1, net.conv_2
        # the tail's ``/ img_range + mean`` folded into the upsampling conv (pixel shuffle
        # sends its output channel o to image channel o // scale**2): two passes over the
        # HR image fewer
        self.up = copy.deepcopy(net.upsampler[0])  # its own weights: the reference's stay as they are
        shift = net.mean.detach().flatten().repeat_interleave(cfg.scale**2)
        with torch.no_grad():
            self.up.weight.div_(cfg.img_range)
            self.up.bias.div_(cfg.img_range).add_(shift)
        self.register_buffer("norm_w", net.norm.weight.detach().clone())
        self.register_buffer("norm_b", net.norm.bias.detach().clone())
        self.eps = net.norm.eps
        self.groups = nn.ModuleList(FoldedGroup(g, ops, dense=dense) for g in net.body)
        self.scale, self.min_size = cfg.scale, cfg.min_size
        self.requires_grad_(False)
        self.eval()

    @property
    def channels_last(self) -> bool:
        return self.ops.channels_last

    @property
    def executor(self) -> str:
        """The executor's name (``optimize``'s choice)."""
        return self.ops.name + ("-dense" if self.dense else "")

    def head(self, x: Tensor) -> Tensor:
        """NCHW image -> features in the executor's layout."""
        return self.ops.from_nchw(self.conv_1((x - self.mean) * self.config.img_range))

    def tail(self, feat: Tensor, res: Tensor) -> Tensor:
        """Features and the head's output -> NCHW image (not cropped)."""
        ops = self.ops
        feat = ops.conv(ops.norm(feat, self.norm_w, self.norm_b, self.eps), self.conv_2)
        return F.pixel_shuffle(self.up(ops.to_nchw(feat + res)), self.scale)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected input of shape (N, {self.config.in_chans}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        feat = res = self.head(pad_to_min(x, self.min_size))
        for g in self.groups:
            feat = g(feat)
        return self.tail(feat, res)[..., : h * self.scale, : w * self.scale].contiguous()

    def train(self, mode: bool = True) -> FoldedSeemoRe:
        if mode:
            raise RuntimeError("a folded SeemoRe is for inference only; train the original SeemoRe module")
        return super().train(False)


def _reach(*convs: nn.Conv2d) -> int:
    """How far a chain of convs reads beyond a pixel, in the worse direction (a 1 x k conv
    then a k x 1 conv reach k // 2 each way)."""
    rows = sum(c.kernel_size[0] // 2 * c.dilation[0] for c in convs)
    cols = sum(c.kernel_size[1] // 2 * c.dilation[1] for c in convs)
    return max(rows, cols)


def fold(model: SeemoRe, ops: Ops | None = None, *, dense: bool = False) -> FoldedSeemoRe:
    """The inference form of ``model`` (:class:`FoldedSeemoRe`): the same function with the
    shuffle, splits and norm affines folded into the weights, run by ``ops`` (NCHW PyTorch
    by default; :class:`~seemore_sr.inference.nhwc.NHWCOps` on CPUs); ``dense`` for a
    static graph. Built from a copy: ``model`` is left as it is (as timm keeps
    ``reparameterize_model`` outside the model's file)."""
    return FoldedSeemoRe(copy.deepcopy(model), ops, dense=dense)
