"""``optimize(model)``: the fastest exact inference module for a SeemoRe network's device.

CPU: :class:`~seemore_sr.inference.nhwc.FastSeemoRe` (:mod:`.nhwc`); CUDA:
:class:`~seemore_sr.inference.cuda_graphs.CudaGraphed` (:mod:`.cuda_graphs`). Both give
the network's outputs (max abs difference ~1e-5 in fp32) and are for inference only.
"""

from __future__ import annotations

import copy

from torch import nn

from ..models.seemore import SeemoRe
from .cuda_graphs import CudaGraphed, exact_cudnn
from .nhwc import FastSeemoRe

__all__ = ["optimize", "FastSeemoRe", "CudaGraphed", "exact_cudnn"]


def optimize(model: SeemoRe) -> nn.Module:
    """The fastest exact inference module for ``model``'s device (eval only, same outputs).

    CPU: :class:`FastSeemoRe` (NHWC GEMMs with oneDNN-fused GELU / add). CUDA: the
    eager NCHW network replayed as CUDA graphs (:class:`CudaGraphed`); cuDNN's NCHW
    kernels beat the NHWC rewrite there (``benchmarks/bench_inference.py``). Other
    devices: an eval-mode copy of the network. ``model`` itself is left as it was (its
    mode included): the result holds its own copy of the weights.
    """
    if isinstance(model, FastSeemoRe | CudaGraphed):
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        return CudaGraphed(model)
    if device.type != "cpu":
        return copy.deepcopy(model).eval().requires_grad_(False)
    return FastSeemoRe(model).to(device)
