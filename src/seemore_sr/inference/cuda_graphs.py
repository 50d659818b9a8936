"""The GPU executor: the folded network (NCHW, dense MoE layers) replayed as CUDA graphs."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from ..models.folded import fold
from ..models.seemore import SeemoRe

__all__ = ["CudaGraphed", "exact_cudnn"]


@contextmanager
def exact_cudnn():
    """fp32 convolutions without TF32 (PyTorch allows TF32 in cuDNN by default, which moves
    SeemoRe's outputs by ~2e-3; measured on an H100 against the golden vectors)."""
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = prev


class CudaGraphed(nn.Module):
    """The folded NCHW network replayed as CUDA graphs, one per input shape and precision.

    On a GPU the per-kernel launch cost dominates SeemoRe at common image sizes (the
    tiny model runs ~300 small kernels per image). The network is folded dense (every
    expert as one low-rank product, the unchosen ones weighted 0: same outputs, no host
    synchronisation), so the whole forward can be captured and replayed. A shape is captured on its second call
    (the first runs eagerly); at most ``max_graphs`` shapes are kept (least recently
    used first out); inputs above ``max_pixels`` run eagerly. ``ops``: the folded network's
    executor (default plain NCHW; a benchmark passes channels_last).
    """

    def __init__(self, model: SeemoRe, max_graphs: int = 3, max_pixels: int = 4_000_000, ops=None) -> None:
        super().__init__()
        self.model = fold(model, ops, dense=True)  # ops: plain NCHW by default (cuDNN)
        self.executor = "cuda-graphs"
        self.config = model.config
        self.max_graphs, self.max_pixels = max_graphs, max_pixels
        self._graphs: OrderedDict = OrderedDict()
        self._seen: set = set()
        self._broken = False

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        with exact_cudnn():
            return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        amp = x.device.type == "cuda" and torch.is_autocast_enabled("cuda")
        net = self.model
        if self._broken or x.device.type != "cuda" or x.shape[0] * x.shape[-2] * x.shape[-1] > self.max_pixels:
            return net(x)
        key = (tuple(x.shape), x.dtype, amp and torch.get_autocast_dtype("cuda"))
        entry = self._graphs.get(key)
        if entry is None:
            if key not in self._seen:  # a shape seen once (an evaluation set, say) is not worth a capture
                self._seen.add(key)
                return net(x)
            try:
                entry = self._capture(net, x, amp)
            except RuntimeError as e:  # an unusual driver / allocator setting: stay eager
                warnings.warn(f"CUDA graph capture failed, running eagerly: {e}", stacklevel=2)
                self._broken = True
                return net(x)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        static_in, static_out, graph = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone(memory_format=torch.contiguous_format)

    def _capture(self, net: nn.Module, x: Tensor, amp: bool):
        # autocast's weight-cast cache must not outlive the capture: casts go inside the graph
        dtype = torch.get_autocast_dtype("cuda")
        ctx = torch.autocast("cuda", dtype=dtype, cache_enabled=False) if amp else nullcontext()
        static_in = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), ctx:
            for _ in range(2):  # warm-up: cuDNN picks its algorithms outside the capture
                net(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with ctx, torch.cuda.graph(graph):
            static_out = net(static_in)
        return static_in, static_out, graph

    def train(self, mode: bool = True) -> CudaGraphed:
        if mode:
            raise RuntimeError("CudaGraphed is for inference only; train the original SeemoRe module")
        return super().train(False)
