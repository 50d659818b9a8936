"""Parameter and MAC counts, the way the paper (fvcore) counts them.

What is counted, following fvcore's default handlers: one MAC per multiply-add of
every ``Conv2d`` and ``Linear`` that runs (bias excluded), plus fvcore's rule for
``upsample_bilinear2d`` (4 per output element, the resize in ``calibrate``).
Normalisation, activations, elementwise products and pooling are not counted.

In eval mode only the routed experts run, so the count depends on the routing.
:func:`count_macs` counts what a given input routes to, or a forced ``expert`` in every
MoE layer; :func:`profile_macs` is the paper's convention (output 1280x720, batch 1)
with the middle expert forced, and :func:`profile_macs_range` gives the spread from
the cheapest to the dearest expert.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["count_params", "count_macs", "profile_macs", "profile_macs_range", "paper_input_size"]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor, expert: int | None = None) -> int:
    """MACs of one forward pass on ``x``; with ``expert`` set, that expert in every MoE layer.

    With ``expert`` set, the pass runs on the ``meta`` device (shapes only, instant), with the
    MoE layers dense, and only that expert's convs are counted.
    """
    from .seemore import MoELayer

    skipped: set[int] = set()  # the convs of the experts not counted
    if expert is not None:
        model = copy.deepcopy(model).to("meta")
        x = torch.empty(x.shape, device="meta")
        for m in model.modules():
            if isinstance(m, MoELayer):
                skipped |= {id(c) for j, e in enumerate(m.experts) if j != expert for c in e.modules()}

    total = 0

    def resize_hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 4 * inp[1].numel()  # calibrate's bilinear resize, to k's size (MoRE's second input)

    def conv_hook(m: nn.Conv2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        if id(m) in skipped:
            return
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, MoELayer):
            handles.append(m.register_forward_hook(resize_hook))
    try:
        with torch.no_grad():
            model(x, dense=expert is not None)
    finally:
        for h in handles:
            h.remove()
    return total


def paper_input_size(scale: int, width: int = 1280, height: int = 720) -> tuple[int, int]:
    """LR ``(H, W)`` whose output is ``width x height`` (floored, as fvcore scripts do)."""
    return height // scale, width // scale


def _paper_input(model: nn.Module, width: int, height: int) -> torch.Tensor:
    cfg = model.config  # type: ignore[attr-defined]
    h, w = paper_input_size(cfg.scale, width, height)
    return torch.full((1, cfg.in_chans, h, w), 0.5)


def profile_macs(model: nn.Module, width: int = 1280, height: int = 720) -> int:
    """MACs for an output of ``width x height``, the middle expert in every MoE layer."""
    middle = model.config.num_experts // 2  # type: ignore[attr-defined]
    return count_macs(model, _paper_input(model, width, height), expert=middle)


def profile_macs_range(model: nn.Module, width: int = 1280, height: int = 720) -> tuple[int, int]:
    """MACs with the cheapest and with the dearest expert routed everywhere."""
    x = _paper_input(model, width, height)
    last = model.config.num_experts - 1  # type: ignore[attr-defined]
    return count_macs(model, x, expert=0), count_macs(model, x, expert=last)
