"""The network re-expressed for export: standard NCHW ops, weights folded, routing in-graph.

:func:`~seemore_sr.inference.export.export_onnx` traces this module instead of the
eager one. It computes the same function (within ~1e-6: only the order of float
operations changes) with fewer and cheaper nodes, which is what a graph runtime
(onnxruntime, OpenVINO) runs faster:

- the channel shuffle after RME's ``conv_1`` and every split of a 1x1 conv's output
  into halves become two 1x1 convs with permuted / halved weights (no shuffle, no split);
- a LayerNorm's affine folds into the 1x1 conv after it (the FFNs' ``fn_1`` and SME's
  ``to_qv``); before RME's padded 3x3 conv it stays, since folding its bias there would
  change the zero padding;
- the experts of a MoE layer run as one low-rank product of all their ranks together
  (``conv_3(conv_1(x) * conv_2(k) * m)``, ``m`` = each image's routing weight spread over
  that expert's rank channels, 0 for unchosen experts), plus the weighted ``conv_3``
  biases: three convs instead of three per expert.

Input and output follow :class:`~seemore_sr.models.seemore.SeemoRe`'s contract, except
that the graph does not pad: inputs must be at least ``config.min_size`` on each side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.seemore import LayerNorm, ResGroup, SeemoRe, route
from .nhwc import _fold, _linear

__all__ = ["ExportGraph"]


def _conv1x1(weight: Tensor, bias: Tensor | None) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    conv.weight.data.copy_(weight.reshape(conv.weight.shape))
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


class _Norm(nn.Module):
    """LayerNorm over channels without its affine (folded into the 1x1 conv after it)."""

    def __init__(self, norm: LayerNorm) -> None:
        super().__init__()
        self.eps = norm.eps

    def forward(self, x: Tensor) -> Tensor:
        d = x - x.mean(1, keepdim=True)
        return d / torch.sqrt((d * d).mean(1, keepdim=True) + self.eps)


def _folded(norm: LayerNorm, conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
    """``conv(norm's affine(y))`` for a 1x1 ``conv`` as ``conv'(y)``: its weight and bias."""
    return _fold(norm, *_linear(conv))


class _Halves(nn.Module):
    """A 1x1 conv to 2C channels, split into halves, as two 1x1 convs (each with GELU if asked)."""

    def __init__(self, weight: Tensor, bias: Tensor, *, gelu: bool) -> None:
        super().__init__()
        c = weight.shape[0] // 2
        self.first, self.second = _conv1x1(weight[:c], bias[:c]), _conv1x1(weight[c:], bias[c:])
        self.gelu = gelu

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.first(x), self.second(x)
        return (F.gelu(a), F.gelu(b)) if self.gelu else (a, b)


class _FFN(nn.Module):
    """Pre-norm gated FFN with its residual: ``x + fn_2(a * gate(g))``, ``(a, g)`` from ``fn_1``."""

    def __init__(self, norm: LayerNorm, ffn: nn.Module) -> None:
        super().__init__()
        self.norm = _Norm(norm)
        self.fn_1 = _Halves(*_folded(norm, ffn.fn_1[0]), gelu=True)
        self.gate, self.fn_2 = ffn.gate, ffn.fn_2

    def forward(self, x: Tensor) -> Tensor:
        a, g = self.fn_1(self.norm(x))
        return self.fn_2(a * self.gate(g)) + x


class _Group(nn.Module):
    """One residual group (RME, then SME), folded."""

    def __init__(self, group: ResGroup) -> None:
        super().__init__()
        rme, sme = group.local_block, group.global_block
        mixer = rme.block
        c = mixer.proj.out_channels
        self.norm_1 = rme.norm_1  # its affine stays: a padded 3x3 conv follows
        self.conv_3x3 = mixer.conv_1[0]
        order = torch.arange(2 * c)
        if mixer.use_shuffle:  # [2, C] -> [C, 2]: output channel j was channel (j % 2) * C + j // 2
            order = order.view(2, c).t().reshape(-1)
        self.to_ak = _Halves(*_linear(mixer.conv_1[2], order), gelu=False)
        self.striped = mixer.conv_2
        self.agg_conv, self.recursive, self.context = mixer.agg_conv, mixer.recursive, mixer.conv
        moe = mixer.moe_layer
        self.router, self.topk = moe.gate.body[2], moe.topk
        experts = moe.experts

        def cat(tensors, dim=0):
            return torch.cat([t.detach() for t in tensors], dim)

        self.low_x = _conv1x1(cat(e.conv_1.weight for e in experts), cat(e.conv_1.bias for e in experts))
        self.low_k = _conv1x1(cat(e.conv_2.weight for e in experts), cat(e.conv_2.bias for e in experts))
        self.up = _conv1x1(cat((e.conv_3.weight for e in experts), 1), None)
        self.register_buffer("up_bias", cat(e.conv_3.bias for e in experts).view(len(experts), c))
        spread = torch.zeros(len(experts), self.low_x.out_channels)  # expert -> its rank channels
        start = 0
        for j, e in enumerate(experts):
            spread[j, start : start + e.conv_1.out_channels] = 1
            start += e.conv_1.out_channels
        self.register_buffer("spread", spread)
        self.proj = mixer.proj
        self.ffn_rme = _FFN(rme.norm_2, rme.ffn)
        self.norm_sme = _Norm(sme.norm_1)
        self.to_qv = _Halves(*_folded(sme.norm_1, sme.block.to_qv[0]), gelu=True)
        self.attn, self.proj_sme = sme.block.attn, sme.block.proj
        self.ffn_sme = _FFN(sme.norm_2, sme.ffn)

    def forward(self, x: Tensor) -> Tensor:
        a, k = self.to_ak(F.gelu(self.conv_3x3(self.norm_1(x))))
        a = self.striped(a)
        pooled = k
        for _ in range(self.recursive):
            pooled = self.agg_conv(pooled)
        k = k + F.interpolate(self.context(pooled), size=k.shape[-2:], mode="bilinear", align_corners=False)
        weights, chosen = route(self.router(a.mean((2, 3))), self.topk, a.dtype)
        n = a.shape[0]
        mix = torch.zeros(n, self.spread.shape[0], dtype=a.dtype).scatter(1, chosen, weights)
        m = (mix @ self.spread).view(n, -1, 1, 1)
        a = a + self.up(self.low_x(a) * self.low_k(k) * m) + (mix @ self.up_bias).view(n, -1, 1, 1)
        x = self.ffn_rme(self.proj(a) + x)
        q, v = self.to_qv(self.norm_sme(x))
        x = self.proj_sme(self.attn(q) * v) + x
        return self.ffn_sme(x)


class ExportGraph(nn.Module):
    """``net`` folded for export (see the module docstring); shares no parameters it changes."""

    def __init__(self, net: SeemoRe) -> None:
        super().__init__()
        self.config = net.config
        self.register_buffer("mean", net.mean.clone())
        self.conv_1, self.norm, self.conv_2, self.upsampler = net.conv_1, net.norm, net.conv_2, net.upsampler
        self.groups = nn.ModuleList(_Group(g) for g in net.body)

    def forward(self, x: Tensor) -> Tensor:
        r = self.config.img_range
        res = self.conv_1((x - self.mean) * r)
        feat = res
        for group in self.groups:
            feat = group(feat)
        return self.upsampler(self.conv_2(self.norm(feat)) + res) / r + self.mean
