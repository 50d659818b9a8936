"""The SeemoRe network (Zamir et al., "See More Details", ICML 2024).

One module, one block per class, each ``forward`` reading like the paper's figure.
State-dict keys and shapes are those of the authors' released checkpoints.

Tensor contract of :class:`SeemoRe`: input ``(N, in_chans, H, W)`` float in
``[0, 1]``; output ``(N, in_chans, H*scale, W*scale)`` of the same dtype, not clamped.
Any ``H, W >= 1`` works: inputs smaller than ``4**recursive`` pixels on a side are
padded internally (edge replication) and the output is cropped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SeemoReConfig", "SeemoRe", "expert_ranks", "dense_mix", "pad_to_min", "RANK_GROWTH"]

MEAN = (0.4488, 0.4371, 0.4040)

RANK_GROWTH = {
    "exp": lambda i: 2 ** (i + 1),
    "linear": lambda i: i + 2,
    "double": lambda i: 2 * i + 2,
}


@dataclass(frozen=True)
class SeemoReConfig:
    """Hyperparameters, named as in the authors' ``network_g`` YAML section."""

    scale: int = 4  # upscaling factor, 1..4 (1 = restoration at the same size)
    in_chans: int = 3  # image channels in and out
    num_experts: int = 3  # low-rank experts per MoE block
    num_layers: int = 6  # residual groups (RME + SME)
    embedding_dim: int = 36  # feature channels C
    img_range: float = 1.0  # input scaling after mean subtraction
    use_shuffle: bool = True  # channel shuffle before splitting x / k in the MoE block
    global_kernel_size: int = 11  # striped conv kernel in SME
    recursive: int = 2  # agg_conv steps in calibrate (min input side = 4**recursive)
    lr_space: str = "exp"  # expert rank growth: exp | linear | double
    topk: int = 1  # experts chosen per image

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"invalid SeemoRe config: {msg}")

        ints = ("scale", "in_chans", "num_experts", "num_layers", "embedding_dim", "global_kernel_size", "recursive",
                "topk")  # fmt: skip
        for name in ints:  # configs also come from files: check types before comparing anything
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.img_range, (int, float)) or isinstance(self.img_range, bool):
            raise bad(f"img_range must be a number, got {self.img_range!r}")
        if not isinstance(self.use_shuffle, bool):
            raise bad(f"use_shuffle must be true or false, got {self.use_shuffle!r}")
        if not isinstance(self.lr_space, str):
            raise bad(f"lr_space must be a string, got {self.lr_space!r}")
        if self.scale not in (1, 2, 3, 4):
            raise bad(f"scale must be 1, 2, 3 or 4, got {self.scale!r}")
        if self.embedding_dim % 2:
            raise bad(f"embedding_dim must be even (channel shuffle), got {self.embedding_dim}")
        if self.lr_space not in RANK_GROWTH:
            raise bad(f"lr_space must be one of {sorted(RANK_GROWTH)}, got {self.lr_space!r}")
        if not 1 <= self.topk <= self.num_experts:
            raise bad(f"topk must be in 1..num_experts={self.num_experts}, got {self.topk!r}")
        if self.global_kernel_size < 1 or self.global_kernel_size % 2 == 0:
            raise bad(f"global_kernel_size must be odd and positive, got {self.global_kernel_size}")
        if not math.isfinite(self.img_range) or self.img_range <= 0:
            raise bad(f"img_range must be positive, got {self.img_range}")

    @property
    def min_size(self) -> int:
        """Smallest input side the network computes on without padding."""
        return 4**self.recursive


def pad_to_min(x: Tensor, min_size: int) -> Tensor:
    """``x`` (..., H, W) edge-replicated at the bottom and right to at least ``min_size`` a
    side (the network's ``4**recursive``), else unchanged: the one padding rule of every
    path (module, folded network, tiles, exported graph); callers crop the output back.

    While tracing (ONNX export) the padding is a gather of clamped indices, so the graph
    pads whatever size it is given at run time, not the tracing input's."""
    if torch.jit.is_tracing():
        for dim in (x.ndim - 2, x.ndim - 1):
            size = torch._shape_as_tensor(x)[dim]
            idx = torch.arange(torch.clamp(size, min=min_size)).clamp(max=size - 1)
            x = x.index_select(dim, idx)
        return x
    ph, pw = max(min_size - x.shape[-2], 0), max(min_size - x.shape[-1], 0)
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def expert_ranks(lr_space: str, num_experts: int) -> list[int]:
    return [RANK_GROWTH[lr_space](i) for i in range(num_experts)]


# ----------------------------------------------------------------------------- layers


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (eps 1e-6, biased variance).

    A channels_last tensor is normalised as the NHWC rows it is stored as, with torch's
    fused kernel (same function; several times faster, forward and backward, and the
    layout is kept for the convolutions that follow).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] > 1 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class StripedConv2d(nn.Module):
    """A (1 x k) conv followed by a (k x 1) conv, depthwise when asked."""

    def __init__(self, dim: int, kernel_size: int, *, depthwise: bool) -> None:
        super().__init__()
        groups = dim if depthwise else 1
        pad = kernel_size // 2
        self.conv = nn.Sequential(
            nn.Conv2d(dim, dim, (1, kernel_size), padding=(0, pad), groups=groups),
            nn.Conv2d(dim, dim, (kernel_size, 1), padding=(pad, 0), groups=groups),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class GatedFFN(nn.Module):
    """The gated feed-forward network (GFFN) after each expert: a depthwise-conv gate on half the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fn_1 = nn.Sequential(nn.Conv2d(dim, 2 * dim, 1), nn.GELU())
        self.gate = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.fn_2 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        a, g = self.fn_1(x).chunk(2, dim=1)
        return self.fn_2(a * self.gate(g))


class StripedConvFormer(nn.Module):
    """SEE (Spatial Enhancement Expertise), SME's token mixer: a large striped depthwise conv gating a value branch."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.to_qv = nn.Sequential(nn.Conv2d(dim, 2 * dim, 1), nn.GELU())
        self.attn = StripedConv2d(dim, kernel_size, depthwise=True)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        q, v = self.to_qv(x).chunk(2, dim=1)
        return self.proj(self.attn(q) * v)


class Expert(nn.Module):
    """A low-rank expert: ``conv_3(conv_1(x) * conv_2(k))``."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(dim, rank, 1)
        self.conv_2 = nn.Conv2d(dim, rank, 1)
        self.conv_3 = nn.Conv2d(rank, dim, 1)

    def forward(self, x: Tensor, k: Tensor) -> Tensor:
        return self.conv_3(self.conv_1(x) * self.conv_2(k))


class Router(nn.Module):
    """The router: expert logits from the spatial mean of RME's features (one decision per image)."""

    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(dim, num_experts, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def logits(self, mean: Tensor) -> Tensor:
        """The logits from an already averaged ``[N, C]`` input (what tiles add up to)."""
        return self.body[2](mean)


def route(logits: Tensor, topk: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Softmax in float32, cast back, top-k per image: ``(weights [N,k], experts [N,k])``."""
    weights = F.softmax(logits, dim=1, dtype=torch.float32).to(dtype)
    return torch.topk(weights, topk, dim=1)


def dense_mix(weights: Tensor, chosen: Tensor, num_experts: int) -> Tensor:
    """``[N, num_experts]`` weights: each image's routed weights, 0 for unchosen experts."""
    mix = weights.new_zeros(weights.shape[0], num_experts)
    return mix.scatter(1, chosen, weights)


class MoELayer(nn.Module):
    """MoRE (Mixture of Low-Rank Expertise): ``x + sum_j w_j expert_j(x, k)`` over the experts
    the router picks for each image (top-k of the softmax of its logits, from the spatial
    mean of ``x``).

    ``dense=False`` computes only the chosen experts; ``dense=True`` computes every expert
    and weights the unchosen ones by 0 (the authors' training path): the same outputs and
    gradients, a static graph.
    """

    def __init__(self, dim: int, ranks: list[int], topk: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(Expert(dim, r) for r in ranks)
        self.gate = Router(dim, len(ranks))
        self.topk = topk

    def routing(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The decision for features ``x``: ``(weights [N, k], experts [N, k])``."""
        return route(self.gate(x), self.topk, x.dtype)

    def forward(self, x: Tensor, k: Tensor, *, dense: bool = False) -> Tensor:
        weights, chosen = self.routing(x)
        if dense:
            mix = dense_mix(weights, chosen, len(self.experts))
            out = x
            for j, expert in enumerate(self.experts):
                out = out + expert(x, k) * mix[:, j].view(-1, 1, 1, 1)
            return out
        out = x
        for j, expert in enumerate(self.experts):
            hit = chosen == j  # [N, topk]
            if x.shape[0] == 1:  # common case: no gather/scatter
                if bool(hit.any()):
                    w = (weights * hit).sum(1)
                    out = out + expert(x, k) * w.view(1, 1, 1, 1)
                continue
            rows = hit.any(1).nonzero().flatten()
            if rows.numel() == 0:
                continue
            if rows.numel() == x.shape[0]:  # every image chose this expert: no gather/scatter
                w = (weights * hit).sum(1).view(-1, 1, 1, 1)
                out = out + expert(x, k) * w
                continue
            w = (weights[rows] * hit[rows]).sum(1).view(-1, 1, 1, 1)
            out = out.index_add(0, rows, (expert(x[rows], k[rows]) * w).to(out.dtype))  # autocast: w is fp32
        return out


class MoEBlock(nn.Module):
    """RME's mixer: ``conv_1`` (and the channel shuffle) split into local features ``a`` (through
    the striped ``conv_2``) and context ``k`` (calibrated); MoRE mixes them; ``proj``."""

    def __init__(self, dim: int, cfg: SeemoReConfig) -> None:
        super().__init__()
        self.use_shuffle = cfg.use_shuffle
        self.recursive = cfg.recursive
        self.conv_1 = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, 2 * dim, 1))
        self.agg_conv = nn.Sequential(nn.Conv2d(dim, dim, 4, stride=4, groups=dim), nn.GELU())
        self.conv = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, dim, 1))
        self.conv_2 = nn.Sequential(StripedConv2d(dim, 3, depthwise=True), nn.GELU())
        ranks = expert_ranks(cfg.lr_space, cfg.num_experts)
        self.moe_layer = MoELayer(dim, ranks, cfg.topk)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, *, dense: bool = False) -> Tensor:
        a, k = self.split(x)
        return self.proj(self.moe_layer(self.conv_2(a), self.calibrate(k), dense=dense))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``conv_1``, optional channel shuffle, split into ``(x, k)`` halves."""
        x = self.conv_1(x)
        if self.use_shuffle:
            n, c, h, w = x.shape
            if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
                # the same shuffle on the NHWC storage, so the result stays channels_last
                x = x.permute(0, 2, 3, 1).reshape(n, h, w, 2, c // 2).transpose(3, 4).reshape(n, h, w, c)
                x = x.permute(0, 3, 1, 2)
            else:
                x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return x.chunk(2, dim=1)

    def calibrate(self, k: Tensor) -> Tensor:
        """``k`` plus its context: pooled ``recursive`` times by 4, convolved, resized back."""
        pooled = k
        for _ in range(self.recursive):
            pooled = self.agg_conv(pooled)
        ctx = F.interpolate(self.conv(pooled), size=k.shape[-2:], mode="bilinear", align_corners=False)
        return k + ctx


class RME(nn.Module):
    """Rank modulating expert: pre-norm MoE block and gated FFN, each residual."""

    def __init__(self, dim: int, cfg: SeemoReConfig) -> None:
        super().__init__()
        self.norm_1 = LayerNorm(dim)
        self.block = MoEBlock(dim, cfg)
        self.norm_2 = LayerNorm(dim)
        self.ffn = GatedFFN(dim)

    def forward(self, x: Tensor, *, dense: bool = False) -> Tensor:
        x = self.block(self.norm_1(x), dense=dense) + x
        return self.ffn(self.norm_2(x)) + x


class SME(nn.Module):
    """Spatial modulating expert: pre-norm striped conv former and gated FFN."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.norm_1 = LayerNorm(dim)
        self.block = StripedConvFormer(dim, kernel_size)
        self.norm_2 = LayerNorm(dim)
        self.ffn = GatedFFN(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(self.norm_1(x)) + x
        return self.ffn(self.norm_2(x)) + x


class ResGroup(nn.Module):
    """A residual group (RG): the rank modulating expert (RME), then the spatial modulating expert (SME)."""

    def __init__(self, dim: int, cfg: SeemoReConfig) -> None:
        super().__init__()
        self.local_block = RME(dim, cfg)
        self.global_block = SME(dim, cfg.global_kernel_size)

    def forward(self, x: Tensor, *, dense: bool = False) -> Tensor:
        return self.global_block(self.local_block(x, dense=dense))


# ----------------------------------------------------------------------------- network


class SeemoRe(nn.Module):
    """SeemoRe super-resolution network; see the module docstring for the contract."""

    def __init__(self, config: SeemoReConfig) -> None:
        super().__init__()
        self.config = config
        c = config.embedding_dim
        n = config.in_chans
        # The authors' convention (as in SwinIR): the DIV2K RGB mean, zero otherwise.
        mean = torch.tensor(MEAN).view(1, 3, 1, 1) if n == 3 else torch.zeros(1, 1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.conv_1 = nn.Conv2d(n, c, 3, padding=1)
        self.body = nn.ModuleList(ResGroup(c, config) for _ in range(config.num_layers))
        self.norm = LayerNorm(c)
        self.conv_2 = nn.Conv2d(c, c, 3, padding=1)
        s = config.scale
        self.upsampler = nn.Sequential(nn.Conv2d(c, n * s * s, 3, padding=1), nn.PixelShuffle(s))

    def forward(self, x: Tensor, *, dense: bool = False) -> Tensor:
        """``dense``: every expert computed, the unchosen weighted 0 (same outputs; :class:`MoELayer`)."""
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected input of shape (N, {self.config.in_chans}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_min(x, self.config.min_size)
        img_range = self.config.img_range
        res = self.conv_1((x - self.mean) * img_range)
        feat = res
        for group in self.body:
            feat = group(feat, dense=dense)
        out = self.upsampler(self.conv_2(self.norm(feat)) + res) / img_range + self.mean
        s = self.config.scale
        return out[..., : h * s, : w * s]
