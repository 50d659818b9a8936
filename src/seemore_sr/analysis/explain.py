"""See the experts at work: routing decisions and feature maps, captured with forward hooks.

The paper's Figure 5 (left) counts, for every MoRE layer, which low-rank expert the router
picks over a set of images; Figure 5 (right) shows the chosen experts' low-rank features;
Figure 6 shows a residual group's features before and after MoRE and SEE. This module
collects that data from any :class:`SeemoRe` without changing it: hooks are attached for
one forward pass and removed again, and the model's code has no analysis branches.
Plotting lives in :mod:`seemore_sr.analysis.figures` (matplotlib, optional).

    choices = route_images(model, [lr1, lr2])   # [image][layer] -> chosen experts
    counts = routing_counts(model, choices)      # [layers, experts] images per expert
    cap = capture(model, lr)                     # one image: routing, low-rank maps, group features
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import OptionError
from ..models.seemore import MoELayer, SeemoRe, expert_ranks, route

__all__ = [
    "Capture",
    "capture",
    "expert_ranks_of",
    "recorded_routing",
    "route_images",
    "routing_counts",
    "to_tensor",
]


def expert_ranks_of(model: SeemoRe) -> list[int]:
    """The rank of each expert (the same in every layer): 2, 4, 8 for the released models."""
    return expert_ranks(model.config.lr_space, model.config.num_experts)


def to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """``(H, W, C)`` uint8/uint16/float array or ``(C, H, W)`` / ``(1, C, H, W)`` tensor -> ``(1, C, H, W)``."""
    if isinstance(image, Tensor):
        t = image.float()
        return t[None] if t.ndim == 3 else t
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    return torch.from_numpy(a.astype(np.float32) / scale).permute(2, 0, 1)[None].contiguous()


class _Hooks:
    """Forward hooks that live for one ``with`` block."""

    def __init__(self) -> None:
        self.handles: list = []

    def add(self, module: torch.nn.Module, fn, pre: bool = False) -> None:
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self.handles.append(register(fn))

    def __enter__(self) -> _Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


def _moe_layers(model: SeemoRe) -> list[MoELayer]:
    return [g.local_block.block.moe_layer for g in model.body]


def _decisions(model: SeemoRe, hooks: _Hooks) -> list[tuple[Tensor, Tensor]]:
    """Hook every router; each entry becomes ``(weights [N, k], experts [N, k])`` after a forward pass.

    The decision is recomputed from the router's logits with the model's own ``route``,
    so it is the one the MoE layer acts on.
    """
    found: list[tuple[Tensor, Tensor]] = []
    for layer in _moe_layers(model):
        logits = layer.gate.body[-1]  # the router's linear layer: its output is the logits
        hooks.add(logits, lambda m, inp, out, layer=layer: found.append(route(out, layer.topk, out.dtype)))
    return found


def _routers(net: torch.nn.Module) -> list[tuple[torch.nn.Module, int]]:
    """Every router's linear layer (its output: the logits) and top-k, in group order, of a
    reference or folded network (or anything that holds one)."""
    from ..models.folded import FoldedMoE

    found = []
    for m in net.modules():
        if isinstance(m, MoELayer):
            found.append((m.gate.body[-1], m.topk))
        elif isinstance(m, FoldedMoE):
            found.append((m.router, m.topk))
    return found


@contextmanager
def recorded_routing(*nets: torch.nn.Module) -> Iterator[list[list[int]]]:
    """While the block runs, list the experts that each residual group of the networks in
    ``nets`` (reference or folded) chooses for the first image of a batch, one entry per
    group pass (a tiled pass decides once per group, too).

    It records what the upscale itself decided, at no extra cost (forward hooks on the
    routers). Networks that run no Python per group (CUDA graph replays, ONNX) record
    nothing: the list stays empty.
    """
    found: list[list[int]] = []
    with _Hooks() as hooks:
        seen = set()
        for net in nets:
            for linear, topk in _routers(net):
                if id(linear) not in seen:
                    seen.add(id(linear))
                    hooks.add(linear, lambda m, i, out, k=topk: found.append(route(out, k, out.dtype)[1][0].tolist()))
        yield found


@torch.no_grad()
def route_images(model: SeemoRe, images: Iterable[np.ndarray | Tensor]) -> list[list[list[int]]]:
    """For each image, for each MoRE layer, the experts the router chose (``topk`` of them).

    Images run one at a time (routing depends on the whole image), in eval mode.
    """
    model.eval()
    out = []
    for image in images:
        with _Hooks() as hooks:
            found = _decisions(model, hooks)
            model(to_tensor(image).to(next(model.parameters()).device))
        out.append([experts[0].tolist() for _, experts in found])
    return out


def routing_counts(model: SeemoRe, choices: list[list[list[int]]]) -> np.ndarray:
    """``[layers, experts]``: how often each expert was chosen in each layer."""
    counts = np.zeros((model.config.num_layers, model.config.num_experts), dtype=np.int64)
    for per_image in choices:
        for layer, experts in enumerate(per_image):
            for e in experts:
                counts[layer, e] += 1
    return counts


@dataclass
class Capture:
    """One image through the network: what was decided and what the features looked like."""

    input: Tensor  # (C, h, w) in [0, 1]
    output: Tensor  # (C, h*s, w*s), clamped
    experts: list[list[int]]  # per layer, the chosen experts
    weights: list[list[float]]  # per layer, their routing weights
    ranks: list[int]  # rank of each expert
    lowrank: dict[int, Tensor] = field(default_factory=dict)  # layer -> (rank, h, w): conv_1(x) * conv_2(k)
    group: int = 0  # the residual group whose features follow
    before: Tensor | None = None  # (C, h, w) entering the group
    after_more: Tensor | None = None  # after the rank modulating expert (RME)
    after_see: Tensor | None = None  # after the spatial modulating expert (SME) = the group's output


@torch.no_grad()
def capture(model: SeemoRe, image: np.ndarray | Tensor, *, group: int = 0) -> Capture:
    """Run one image and keep the routing, each layer's low-rank features, and ``group``'s features."""
    if not 0 <= group < len(model.body):
        raise OptionError("group", group, f"must be in 0..{len(model.body) - 1}")
    model.eval()
    x = to_tensor(image).to(next(model.parameters()).device)
    lowrank: dict[int, Tensor] = {}
    feats: dict[str, Tensor] = {}
    with _Hooks() as hooks:
        found = _decisions(model, hooks)
        for i, layer in enumerate(_moe_layers(model)):
            for expert in layer.experts:
                # conv_3's input is the expert's low-rank product; only chosen experts run
                hooks.add(expert.conv_3, lambda m, inp, i=i: lowrank.__setitem__(i, inp[0][0].cpu()), pre=True)
        g = model.body[group]
        hooks.add(g, lambda m, inp: feats.__setitem__("before", inp[0][0].cpu()), pre=True)
        hooks.add(g.global_block, lambda m, inp: feats.__setitem__("after_more", inp[0][0].cpu()), pre=True)
        hooks.add(g.global_block, lambda m, inp, out: feats.__setitem__("after_see", out[0].cpu()))
        y = model(x)
    h, w = x.shape[-2:]
    crop = lambda t: t[..., :h, :w]  # noqa: E731 - inputs below the minimum size are padded inside
    return Capture(
        input=x[0].cpu(),
        output=y[0].clamp(0, 1).cpu(),
        experts=[e[0].tolist() for _, e in found],
        weights=[wt[0].tolist() for wt, _ in found],
        ranks=expert_ranks_of(model),
        lowrank={i: crop(t) for i, t in lowrank.items()},
        group=group,
        before=crop(feats["before"]),
        after_more=crop(feats["after_more"]),
        after_see=crop(feats["after_see"]),
    )
