"""The CPU executor of the folded network: :class:`NHWCOps` runs its operations on NHWC tensors.

On NHWC data the folded network's 40-odd 1x1 convs per image are single GEMMs over the
channel axis (oneDNN, with the GELU or the residual add fused into the same pass where
oneDNN can), LayerNorm is four vectorised passes over the channels, and the 3x3 /
striped / depthwise convs run on the channels_last view of the same storage (oneDNN's
fast path). No block's arithmetic is written here: that is
:mod:`seemore_sr.models.folded`'s; this module only says how each operation runs.

``fused=False`` gives the same executor with plain PyTorch ops (torch's ``layer_norm``,
GELU / add / mul as separate passes): a candidate of its own on CPUs where oneDNN's
fused kernels do not pay (``optimize`` measures), and the path under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.folded import Ops

__all__ = ["NHWCOps", "DNN"]

# oneDNN's fused kernels (what inductor emits on x86): a GEMM or conv with its GELU,
# add or mul applied in the same pass, so no intermediate tensor is written and re-read.
DNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _nchw(x: Tensor) -> Tensor:  # NHWC storage seen as NCHW (channels_last)
    return x.permute(0, 3, 1, 2)


def _nhwc(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


class NHWCOps(Ops):
    """:class:`~seemore_sr.models.folded.Ops` on NHWC ``(N, H, W, C)`` tensors (CPU)."""

    channels_last = True

    def __init__(self, fused: bool = True, *, torch_norm: bool | None = None) -> None:
        """``fused``: oneDNN's fused GEMM kernels; ``torch_norm``: LayerNorm by PyTorch's
        ``layer_norm`` kernel rather than the composed passes (default: with ``fused=False``)."""
        self.fused = fused and DNN
        self.torch_norm = (not self.fused) if torch_norm is None else torch_norm
        self.name = "nhwc" if not self.fused else "nhwc-fused-ln" if self.torch_norm else "nhwc-fused"

    def _dnn(self, x: Tensor) -> bool:
        return (
            self.fused
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()  # inductor fuses on its own
        )

    def linear(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        *,
        gelu: bool = False,
        add: Tensor | None = None,
        mul: Tensor | None = None,
    ) -> Tensor:
        if mul is not None:
            if self._dnn(x) and b is not None and add is None and not gelu:
                return torch.ops.mkldnn._linear_pointwise.binary(x, mul, w, b, "mul")
            return self.linear(x, w, b, gelu=gelu, add=add).mul_(mul)
        if self._dnn(x) and b is not None:
            if add is None:
                act, algo = ("gelu", "none") if gelu else ("none", "")
                return torch.ops.mkldnn._linear_pointwise(x, w, b, act, [], algo)
            if not gelu:
                return torch.ops.mkldnn._linear_pointwise.binary(x, add, w, b, "add")
            # oneDNN has no GEMM + GELU + add in one kernel: GELU fused, then the add in place
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none").add_(add)
        y = F.linear(x, w, b)
        if gelu:
            y = F.gelu(y)
        return y if add is None else y.add_(add)

    def conv(self, x: Tensor, conv: nn.Conv2d, *, gelu: bool = False, mul: Tensor | None = None) -> Tensor:
        """The conv on the channels_last view. A product is not fused: oneDNN's conv +
        binary-mul kernel's speed varies from one process to the next, a conv followed by
        an in-place multiply does not (BENCHMARKS.md, ``benchmarks/kernel_rates.py``)."""
        args = (conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups)
        if self._dnn(x) and mul is None:
            act, algo = ("gelu", "none") if gelu else ("none", "")
            return _nhwc(torch.ops.mkldnn._convolution_pointwise(_nchw(x), *args, act, [], algo))
        y = _nhwc(F.conv2d(_nchw(x), conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups))
        if gelu:
            y = F.gelu(y)
        return y if mul is None else y.mul_(mul)

    def norm(self, x: Tensor, w: Tensor | None = None, b: Tensor | None = None, eps: float = 1e-6) -> Tensor:
        """PyTorch's ``layer_norm`` kernel, or four vectorised passes (the kernel handles
        36-channel rows poorly on some CPUs, well on others: ``optimize`` measures which;
        BENCHMARKS.md); the same formula, max difference ~1e-6. The kernel gets an identity
        affine where there is none: its path without one was slower where measured."""
        if self.torch_norm or not self._dnn(x):
            c = x.shape[-1]
            if w is None:
                w = torch.ones(c, dtype=x.dtype, device=x.device)
            if b is None:
                b = torch.zeros(c, dtype=x.dtype, device=x.device)
            return F.layer_norm(x, (c,), w, b, eps)
        xc = x - x.mean(-1, keepdim=True)
        var = torch.linalg.vector_norm(xc, dim=-1, keepdim=True).square_().div_(x.shape[-1])
        y = xc.mul_(var.add_(eps).rsqrt_())
        if w is not None:
            y.mul_(w)
        return y if b is None else y.add_(b)

    def per_image(self, v: Tensor) -> Tensor:
        return v[:, None, None, :]

    def spatial_mean(self, x: Tensor) -> Tensor:
        return x.mean((1, 2))

    def from_nchw(self, x: Tensor) -> Tensor:
        return _nhwc(x)

    def to_nchw(self, x: Tensor) -> Tensor:
        return _nchw(x)

    def add_resized(self, ctx: Tensor, k: Tensor) -> Tensor:
        # a channels_last context: the bilinear resize writes NHWC, so the add is contiguous
        ctx = ctx.contiguous(memory_format=torch.channels_last)
        return _nhwc(F.interpolate(ctx, size=k.shape[1:3], mode="bilinear", align_corners=False)).add_(k)
