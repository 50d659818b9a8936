"""The executors: the ways the folded network can run on a CPU, by name. One list, read by
``optimize``, the calibration that picks among them, the command line's choices and the
benchmarks."""

from __future__ import annotations

import torch

from ..errors import OptionError
from ..models.folded import Ops
from .nhwc import NHWCOps

__all__ = ["EXECUTORS", "make_ops"]

EXECUTORS = ("nhwc-fused", "nhwc-fused-ln", "nhwc", "nchw-cl", "nchw")


def make_ops(executor: str) -> Ops:
    """The executor object for a name of :data:`EXECUTORS`."""
    if executor == "nhwc-fused":
        return NHWCOps(fused=True)
    if executor == "nhwc-fused-ln":
        return NHWCOps(fused=True, torch_norm=True)
    if executor == "nhwc":
        return NHWCOps(fused=False)
    if executor == "nchw-cl":
        return Ops(torch.channels_last)
    if executor == "nchw":
        return Ops()
    raise OptionError("executor", executor, f"must be auto or one of {', '.join(EXECUTORS)}")
