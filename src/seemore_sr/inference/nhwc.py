"""The CPU inference network: SeemoRe re-expressed on NHWC tensors (:class:`FastSeemoRe`).

Same weights, same outputs (max abs difference ~1e-5 in fp32), eval only. The network
is re-expressed on NHWC tensors, where the 40-odd 1x1 convs per image are single GEMMs
(oneDNN, GELU / residual add fused) and LayerNorm is four vectorised passes over the
channel axis; 3x3 / striped / depthwise convs run on the channels_last view (oneDNN's
fast path). Weights are rearranged once:

- LayerNorm affines folded into the following 1x1 conv where exact (every ``norm_2``,
  SME's ``norm_1``); kept where a zero-padded 3x3 conv follows;
- every "1x1 conv, then split in halves" becomes two GEMMs that write contiguous
  halves, with the MoE block's channel shuffle applied to the weight rows;
- only the routed experts computed, per image.

Each lever is measured in ``benchmarks/bench_inference.py``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.seemore import SeemoRe, dense_mix, pad_to_min, route

__all__ = ["FastSeemoRe", "NHWCGroup"]


def _nchw(x: Tensor) -> Tensor:  # NHWC storage seen as NCHW (channels_last)
    return x.permute(0, 3, 1, 2)


def _nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def _conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A spatial conv on NHWC data via the channels_last NCHW view."""
    y = F.conv2d(_nchw(x), conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return _nhwc(y.contiguous(memory_format=torch.channels_last))


# oneDNN's fused kernels (what inductor emits on x86): a GEMM or conv with its GELU,
# add or mul applied in the same pass, so no intermediate tensor is written and re-read.
_DNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _fused(x: Tensor) -> bool:
    return (
        _DNN
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()  # inductor fuses on its own
    )


def _lin(x: Tensor, w: Tensor, b: Tensor, gelu: bool = False, add: Tensor | None = None) -> Tensor:
    """``gelu?(x @ w.T + b) (+ add)`` on NHWC data, fused where oneDNN can."""
    if _fused(x):
        if add is None:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu" if gelu else "none", [], "none" if gelu else "")
        if not gelu:
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, w, b, "add")
    y = F.linear(x, w, b)
    if gelu:
        y = F.gelu(y)
    return y if add is None else y.add_(add)


def _conv_fused(x: Tensor, conv: nn.Conv2d, gelu: bool = False, mul: Tensor | None = None) -> Tensor:
    """``gelu?(conv(x))`` or ``conv(x) * mul`` on NHWC data, GELU fused where oneDNN can.

    The product is not fused: oneDNN's conv + binary-mul kernel's speed varies from one
    process to the next, a depthwise conv followed by an in-place multiply does not
    (BENCHMARKS.md, ``benchmarks/kernel_rates.py``).
    """
    if _fused(x) and mul is None:
        args = (conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups)
        act, algo = ("gelu", "none") if gelu else ("none", "")
        y = torch.ops.mkldnn._convolution_pointwise(_nchw(x), *args, act, [], algo)
        return _nhwc(y.contiguous(memory_format=torch.channels_last))
    y = _conv(x, conv)
    if gelu:
        y = F.gelu(y)
    return y if mul is None else y.mul_(mul)


def _layer_norm(x: Tensor, w: Tensor | None = None, b: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """LayerNorm over the last (channel) dim of NHWC data, as four vectorised passes.

    PyTorch's ``layer_norm`` kernel handles short rows (36 channels) poorly on the CPU
    (BENCHMARKS.md, ``benchmarks/kernel_rates.py``). Same formula: biased variance of the
    centred values; max difference ~1e-6.
    """
    if not _fused(x):
        return F.layer_norm(x, x.shape[-1:], w, b, eps)
    xc = x - x.mean(-1, keepdim=True)
    var = torch.linalg.vector_norm(xc, dim=-1, keepdim=True).square_().div_(x.shape[-1])
    y = xc.mul_(var.add_(eps).rsqrt_())
    if w is not None:
        y.mul_(w)
    if b is not None:
        y.add_(b)
    return y


def _linear(conv: nn.Conv2d, rows: slice | Tensor = slice(None)) -> tuple[Tensor, Tensor]:
    w = conv.weight.detach()[:, :, 0, 0]
    return w[rows].clone(), conv.bias.detach()[rows].clone()


def _fold(norm, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``linear(norm_affine(x))`` == ``linear'(x)``: fold the norm's affine into the GEMM."""
    return w * norm.weight.detach()[None, :], b + w @ norm.bias.detach()


class NHWCGroup(nn.Module):
    """A residual group on NHWC tensors, as stages (:mod:`seemore_sr.models.stages`)."""

    channels_last = True

    def __init__(self, group, c: int, shuffle: bool) -> None:
        super().__init__()
        rme, sme = group.local_block, group.global_block
        blk = rme.block
        self.c = c
        self.register_buffer("n1_w", rme.norm_1.weight.detach().clone())
        self.register_buffer("n1_b", rme.norm_1.bias.detach().clone())
        self.conv_a = blk.conv_1[0]
        order = torch.arange(2 * c)
        if shuffle:  # [B, 2, C, H, W] -> transpose -> channel i of the result is input channel order[i]
            order = order.view(2, c).t().reshape(-1)
        self._set("x", *_linear(blk.conv_1[2], order[:c]))
        self._set("k", *_linear(blk.conv_1[2], order[c:]))
        self.stripe = list(blk.conv_2[0].conv)
        self.agg, self.ctx_dw, self.ctx_pw = blk.agg_conv[0], blk.conv[0], blk.conv[1]
        self.recursive = blk.recursive
        self.register_buffer("gate", blk.moe_layer.gate.body[2].weight.detach().clone())
        self.topk = blk.moe_layer.topk
        self.experts = list(range(len(blk.moe_layer.experts)))
        for j, e in enumerate(blk.moe_layer.experts):
            self._set(f"e{j}_1", *_linear(e.conv_1))
            self._set(f"e{j}_2", *_linear(e.conv_2))
            self._set(f"e{j}_3", *_linear(e.conv_3))
        self._set("proj", *_linear(blk.proj))
        self._ffn("rffn", rme.ffn, rme.norm_2)
        w, b = _linear(sme.block.to_qv[0])
        self._set("q", *_fold(sme.norm_1, w[:c], b[:c]))
        self._set("v", *_fold(sme.norm_1, w[c:], b[c:]))
        self.sstripe = list(sme.block.attn.conv)
        self._set("sproj", *_linear(sme.block.proj))
        self._ffn("sffn", sme.ffn, sme.norm_2)
        self.rffn_gate, self.sffn_gate = rme.ffn.gate, sme.ffn.gate
        self.convs = nn.ModuleList(  # registered so .to(device) moves them
            [
                self.conv_a,
                *self.stripe,
                self.agg,
                self.ctx_dw,
                self.ctx_pw,
                *self.sstripe,
                self.rffn_gate,
                self.sffn_gate,
            ]
        )

    def _set(self, name: str, w: Tensor, b: Tensor) -> None:
        self.register_buffer(f"{name}_w", w.contiguous())
        self.register_buffer(f"{name}_b", b.contiguous())

    def _ffn(self, name: str, ffn, norm) -> None:
        w, b = _linear(ffn.fn_1[0])
        c = self.c
        self._set(f"{name}_a", *_fold(norm, w[:c], b[:c]))
        self._set(f"{name}_g", *_fold(norm, w[c:], b[c:]))
        self._set(f"{name}_2", *_linear(ffn.fn_2[0]))

    def lin(self, x: Tensor, name: str, gelu: bool = False, add: Tensor | None = None) -> Tensor:
        return _lin(x, getattr(self, f"{name}_w"), getattr(self, f"{name}_b"), gelu, add)

    def norm(self, x: Tensor, w: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        return _layer_norm(x, w, b)

    def ffn(self, x: Tensor, name: str, gate: nn.Conv2d) -> Tensor:
        h = self.norm(x)
        a = self.lin(h, f"{name}_a", gelu=True)
        g = self.lin(h, f"{name}_g", gelu=True)
        return self.lin(_conv_fused(g, gate, mul=a), f"{name}_2", gelu=True).add_(x)

    def experts_mix(self, a: Tensor, k: Tensor, weights: Tensor, chosen: Tensor) -> Tensor:
        """``a + sum over each image's chosen experts j of w_j * expert_j(a, k)``."""
        if torch.compiler.is_compiling():  # a static graph: every expert, the unchosen ones weighted 0
            mix = dense_mix(weights, chosen, len(self.experts))
            m = a
            for j in self.experts:
                low = self.lin(a, f"e{j}_1") * self.lin(k, f"e{j}_2")
                m = m + self.lin(low, f"e{j}_3") * mix[:, j].view(-1, 1, 1, 1)
            return m
        m = a
        for j in self.experts:
            hit = chosen == j
            rows = hit.any(1).nonzero().flatten()
            if rows.numel() == 0:
                continue
            w = (weights[rows] * hit[rows]).sum(1)
            w3, b3 = getattr(self, f"e{j}_3_w"), getattr(self, f"e{j}_3_b")
            if rows.numel() == a.shape[0] == 1:  # one image: the weight folded into the last GEMM
                low = self.lin(a, f"e{j}_1") * self.lin(k, f"e{j}_2")
                m = _lin(low, w3 * w, b3 * w, add=m)
                continue
            xa, kk = (a, k) if rows.numel() == a.shape[0] else (a[rows], k[rows])
            e = _lin(self.lin(xa, f"e{j}_1") * self.lin(kk, f"e{j}_2"), w3, b3) * w.view(-1, 1, 1, 1)
            m = m + e if rows.numel() == a.shape[0] else m.index_add(0, rows, e)
        return m

    # The group in pieces, so tiled inference can run the non-local steps (router mean,
    # pooled context) over the whole image and the rest tile by tile.
    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """RME's two branches ``(a, k)`` before calibration (NHWC in, NHWC out)."""
        h = _conv_fused(self.norm(x, self.n1_w, self.n1_b), self.conv_a, gelu=True)
        a, k = self.lin(h, "x"), self.lin(h, "k")
        return _conv_fused(_conv(a, self.stripe[0]), self.stripe[1], gelu=True), k

    def pool(self, k: Tensor) -> Tensor:
        """``calibrate``'s strided pooling (NHWC in, NCHW channels_last out)."""
        ctx = _nchw(k)
        for _ in range(self.recursive):
            ctx = F.gelu(F.conv2d(ctx, self.agg.weight, self.agg.bias, 4, 0, 1, self.agg.groups))
        return ctx

    def context(self, pooled: Tensor) -> Tensor:
        return self.ctx_pw(self.ctx_dw(pooled))

    def routing(self, mean: Tensor) -> tuple[Tensor, Tensor]:
        """Experts from the spatial mean of ``a``: ``(weights, chosen)``."""
        return route(F.linear(mean, self.gate), self.topk, mean.dtype)

    def finish(self, x: Tensor, a: Tensor, k: Tensor, routing: tuple[Tensor, Tensor]) -> Tensor:
        """The rest of the group, given the calibrated ``k`` and the routing."""
        x = self.lin(self.experts_mix(a, k, *routing), "proj", add=x)
        x = self.ffn(x, "rffn", self.rffn_gate)
        # SME: striped conv former
        h = self.norm(x)
        q, v = self.lin(h, "q", gelu=True), self.lin(h, "v", gelu=True)
        x = self.lin(_conv_fused(_conv(q, self.sstripe[0]), self.sstripe[1], mul=v), "sproj", add=x)
        return self.ffn(x, "sffn", self.sffn_gate)

    def forward(self, x: Tensor) -> Tensor:  # x: NHWC
        a, k = self.branches(x)
        # channels_last context: the bilinear upsampling writes NHWC, so the add is contiguous
        ctx = self.context(self.pool(k)).contiguous(memory_format=torch.channels_last)
        k = _nhwc(F.interpolate(ctx, size=k.shape[1:3], mode="bilinear", align_corners=False)).add_(k)
        return self.finish(x, a, k, self.routing(a.mean((1, 2))))


class FastSeemoRe(nn.Module):
    """A SeemoRe network rewritten for inference; see the module docstring. Same call contract."""

    def __init__(self, model: SeemoRe) -> None:
        super().__init__()
        model = copy.deepcopy(model)  # never share (or freeze) the modules of a model in training
        cfg = self.config = model.config
        self.min_size = cfg.min_size
        self.register_buffer("mean", model.mean.detach().clone(), persistent=False)
        self.conv_1, self.conv_2, self.up = model.conv_1, model.conv_2, model.upsampler[0]
        self.register_buffer("norm_w", model.norm.weight.detach().clone())
        self.register_buffer("norm_b", model.norm.bias.detach().clone())
        self.groups = nn.ModuleList(NHWCGroup(g, cfg.embedding_dim, cfg.use_shuffle) for g in model.body)
        self.requires_grad_(False)
        self.eval()

    def head(self, x: Tensor) -> Tensor:
        """NCHW image -> NHWC features."""
        x = ((x - self.mean) * self.config.img_range).contiguous(memory_format=torch.channels_last)
        return _nhwc(self.conv_1(x).contiguous(memory_format=torch.channels_last))

    def tail(self, feat: Tensor, res: Tensor) -> Tensor:
        """NHWC features and the head's output -> NCHW image."""
        cfg = self.config
        feat = _layer_norm(feat, self.norm_w, self.norm_b)
        feat = _conv(feat, self.conv_2) + res
        return F.pixel_shuffle(self.up(_nchw(feat)), cfg.scale) / cfg.img_range + self.mean

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        feat = res = self.head(pad_to_min(x, self.min_size))
        for g in self.groups:
            feat = g(feat)
        s = self.config.scale
        return self.tail(feat, res)[..., : h * s, : w * s].contiguous()

    def train(self, mode: bool = True) -> FastSeemoRe:
        if mode:
            raise RuntimeError("FastSeemoRe is for inference only; train the original SeemoRe module")
        return super().train(False)
