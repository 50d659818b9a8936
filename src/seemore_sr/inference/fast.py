"""``optimize(model)``: the fastest exact inference module for a SeemoRe network's device.

Every path runs the network's folded inference form (:mod:`seemore_sr.models.folded`);
they differ only in the executor, the object that says how its operations run:

- ``nhwc-fused``: NHWC GEMMs with oneDNN's fused GELU / add (:class:`~.nhwc.NHWCOps`);
- ``nhwc-fused-ln``: the same, with PyTorch's ``layer_norm`` kernel for the norms;
- ``nhwc``: the same layout with plain PyTorch ops (``NHWCOps(fused=False)``);
- ``nchw-cl``: NCHW convolutions on channels_last memory (``Ops(torch.channels_last)``);
- ``nchw``: NCHW convolutions (``Ops()``); on CUDA, replayed as CUDA graphs
  (:class:`~.cuda_graphs.CudaGraphed`, the MoE layers folded dense).

On a CPU, ``executor="auto"`` picks by measuring (:mod:`.calibrate`): which is fastest
depends on the CPU (AVX-512 with AMX against AVX2 only). Each gives the network's
outputs (max abs difference ~1e-5 in fp32), for inference only.
"""

from __future__ import annotations

from torch import nn

from ..models.folded import FoldedSeemoRe, fold
from ..models.seemore import SeemoRe
from .cuda_graphs import CudaGraphed, exact_cudnn
from .executors import EXECUTORS, make_ops

__all__ = ["optimize", "CudaGraphed", "exact_cudnn", "EXECUTORS", "make_ops"]


def optimize(model: SeemoRe, executor: str = "auto") -> nn.Module:
    """The fastest exact inference module for ``model``'s device (eval only, same outputs).

    ``executor``: "auto", or one of :data:`EXECUTORS` to force it (CUDA: only "auto" and
    "nchw", both CUDA graphs). The result names its executor (``.executor``). ``model``
    itself is left as it was (its mode included): the result holds its own copy of the
    weights. A module ``optimize`` returned is returned as it is.
    """
    if isinstance(model, FoldedSeemoRe | CudaGraphed):
        return model
    if executor != "auto":
        make_ops(executor)  # a bad name fails here, on every device
    device = next(model.parameters()).device
    if device.type == "cuda" and executor in ("auto", "nchw"):
        return CudaGraphed(model)
    if executor == "auto":
        if device.type == "cpu":
            from .calibrate import fastest_executor

            executor = fastest_executor(model)
        else:
            executor = "nchw"
    return fold(model, make_ops(executor)).to(device)
