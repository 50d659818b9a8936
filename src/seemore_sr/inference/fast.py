"""``optimize(model)``: the fastest exact inference module for a SeemoRe network.

Same weights, same outputs (max abs difference ~1e-5 in fp32), eval only. The network
is re-expressed on NHWC tensors, where the 40-odd 1x1 convs per image are single GEMMs
(``F.linear``) and LayerNorm is one fused ``F.layer_norm``; 3x3 / striped / depthwise
convs run on the channels_last view (oneDNN's fast path). Weights are rearranged once:

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

from ..models.seemore import SeemoRe, route

__all__ = ["optimize", "FastSeemoRe"]


def _nchw(x: Tensor) -> Tensor:  # NHWC storage seen as NCHW (channels_last)
    return x.permute(0, 3, 1, 2)


def _nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def _conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A spatial conv on NHWC data via the channels_last NCHW view."""
    y = F.conv2d(_nchw(x), conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return _nhwc(y.contiguous(memory_format=torch.channels_last))


def _linear(conv: nn.Conv2d, rows: slice | Tensor = slice(None)) -> tuple[Tensor, Tensor]:
    w = conv.weight.detach()[:, :, 0, 0]
    return w[rows].clone(), conv.bias.detach()[rows].clone()


def _fold(norm, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``linear(norm_affine(x))`` == ``linear'(x)``: fold the norm's affine into the GEMM."""
    return w * norm.weight.detach()[None, :], b + w @ norm.bias.detach()


class _Group(nn.Module):
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

    def lin(self, x: Tensor, name: str) -> Tensor:
        return F.linear(x, getattr(self, f"{name}_w"), getattr(self, f"{name}_b"))

    def norm(self, x: Tensor, w: Tensor | None = None, b: Tensor | None = None) -> Tensor:
        return F.layer_norm(x, (self.c,), w, b, 1e-6)

    def ffn(self, x: Tensor, name: str, gate: nn.Conv2d) -> Tensor:
        h = self.norm(x)
        a = F.gelu(self.lin(h, f"{name}_a"))
        g = F.gelu(self.lin(h, f"{name}_g"))
        return F.gelu(self.lin(a * _conv(g, gate), f"{name}_2")) + x

    def forward(self, x: Tensor) -> Tensor:  # x: NHWC
        # RME: mixture of low-rank experts
        h = F.gelu(_conv(self.norm(x, self.n1_w, self.n1_b), self.conv_a))
        a, k = self.lin(h, "x"), self.lin(h, "k")
        a = F.gelu(_conv(_conv(a, self.stripe[0]), self.stripe[1]))
        ctx = _nchw(k)
        for _ in range(self.recursive):
            ctx = F.gelu(F.conv2d(ctx, self.agg.weight, self.agg.bias, 4, 0, 1, self.agg.groups))
        ctx = self.ctx_pw(self.ctx_dw(ctx))
        k = k + _nhwc(F.interpolate(ctx, size=k.shape[1:3], mode="bilinear", align_corners=False))
        weights, chosen = route(F.linear(a.mean((1, 2)), self.gate), self.topk, a.dtype)
        m = a
        for j in self.experts:
            hit = chosen == j
            rows = hit.any(1).nonzero().flatten()
            if rows.numel() == 0:
                continue
            w = (weights[rows] * hit[rows]).sum(1).view(-1, 1, 1, 1)
            xa, kk = (a, k) if rows.numel() == a.shape[0] else (a[rows], k[rows])
            e = self.lin(self.lin(xa, f"e{j}_1") * self.lin(kk, f"e{j}_2"), f"e{j}_3") * w
            m = m + e if rows.numel() == a.shape[0] else m.index_add(0, rows, e)
        x = self.lin(m, "proj") + x
        x = self.ffn(x, "rffn", self.rffn_gate)
        # SME: striped conv former
        h = self.norm(x)
        q, v = F.gelu(self.lin(h, "q")), F.gelu(self.lin(h, "v"))
        x = self.lin(_conv(_conv(q, self.sstripe[0]), self.sstripe[1]) * v, "sproj") + x
        return self.ffn(x, "sffn", self.sffn_gate)


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
        self.groups = nn.ModuleList(_Group(g, cfg.embedding_dim, cfg.use_shuffle) for g in model.body)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        cfg = self.config
        h, w = x.shape[-2:]
        ph, pw = max(self.min_size - h, 0), max(self.min_size - w, 0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = ((x - self.mean) * cfg.img_range).contiguous(memory_format=torch.channels_last)
        feat = _nhwc(self.conv_1(x).contiguous(memory_format=torch.channels_last))
        res = feat
        for g in self.groups:
            feat = g(feat)
        feat = F.layer_norm(feat, (cfg.embedding_dim,), self.norm_w, self.norm_b, 1e-6)
        feat = _conv(feat, self.conv_2) + res
        out = F.pixel_shuffle(self.up(_nchw(feat)), cfg.scale) / cfg.img_range + self.mean
        return out[..., : h * cfg.scale, : w * cfg.scale].contiguous()

    def train(self, mode: bool = True) -> FastSeemoRe:
        if mode:
            raise RuntimeError("FastSeemoRe is for inference only; train the original SeemoRe module")
        return super().train(False)


def optimize(model: SeemoRe, *, compile: bool = False) -> nn.Module:
    """The fastest exact inference module for ``model`` (eval only, same outputs)."""
    if isinstance(model, FastSeemoRe):
        return model
    device = next(model.parameters()).device
    fast = FastSeemoRe(model.eval()).to(device)
    if compile:
        return torch.compile(fast, dynamic=True)
    return fast
