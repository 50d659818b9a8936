"""MATLAB-compatible ``imresize`` (bicubic, antialiased when shrinking), vectorised.

``imresize(img, scale)`` follows MATLAB's algorithm: a separable cubic kernel
(a = -0.5) widened by ``1/scale`` when shrinking, symmetric boundary handling, the
dimension with the smaller scale resized first. An 8-bit input is rounded back to
8 bits after each pass, as MATLAB's ``imresizemex`` does, which is what makes
``imresize(uint8, 1/s)`` reproduce MATLAB's files bit for bit. Float input stays float.

Accepted arrays: numpy ``(H, W)`` or ``(H, W, C)`` uint8 / float, or torch tensors
``(..., H, W)`` (any leading dims, float or uint8). The output has the input's type.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["imresize", "output_size"]


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size: ``ceil(size * scale)``."""
    return tuple(int(math.ceil(round(s * scale, 9))) for s in size)  # type: ignore[return-value]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@lru_cache(maxsize=64)
def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``(weights [out, P], indices [out, P])`` for one dimension, as MATLAB computes them."""
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w = w / w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx - 1, 2 * in_len).astype(np.int64)]
    keep = np.any(w != 0, axis=0)
    return w[:, keep], idx[:, keep]


@lru_cache(maxsize=64)
def _matrix(in_len: int, out_len: int, scale: float, dtype: torch.dtype) -> Tensor:
    """The resize as a sparse ``(out, in)`` CSR matrix (duplicate mirror taps summed)."""
    w, idx = _contributions(in_len, out_len, scale)
    rows = np.repeat(np.arange(out_len), w.shape[1])
    indices = torch.from_numpy(np.stack([rows, idx.ravel()]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR is beta" notices
        coo = torch.sparse_coo_tensor(indices, torch.from_numpy(w.ravel()), (out_len, in_len))
        return coo.coalesce().to(dtype).to_sparse_csr()


def _resize_dim(x: Tensor, dim: int, out_len: int, scale: float, quantize: bool) -> Tensor:
    """Resize one dimension: one sparse matrix product over all the other dimensions."""
    moved = x.movedim(dim, 0)
    flat = moved.reshape(moved.shape[0], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _matrix(x.shape[dim], out_len, scale, x.dtype) @ flat
    out = out.reshape(out_len, *moved.shape[1:]).movedim(0, dim)
    if quantize:
        out = torch.floor(out + 0.5).clamp_(0, 255)  # MATLAB rounds half away from zero
    return out


def _resize_tensor(x: Tensor, scale: float | tuple[float, float], size: tuple[int, int] | None) -> Tensor:
    h, w = x.shape[-2:]
    if size is None:
        sh, sw = (scale, scale) if isinstance(scale, (int, float)) else scale
        size = (output_size((h, 1), sh)[0], output_size((1, w), sw)[1])
    else:
        sh, sw = size[0] / h, size[1] / w
    quantize = x.dtype == torch.uint8
    work = x.to(torch.float64 if quantize else x.dtype if x.is_floating_point() else torch.float32)
    dims = [(-2, size[0], sh), (-1, size[1], sw)]
    if sw < sh:  # MATLAB resizes the dimension with the smaller scale first
        dims.reverse()
    for dim, n, s in dims:
        work = _resize_dim(work, dim, n, s, quantize)
    return work.to(torch.uint8) if quantize else work


def imresize(img, scale: float | tuple[float, float] | None = None, *, size: tuple[int, int] | None = None):
    """Resize ``img`` by ``scale`` (or to ``size = (H, W)``) like MATLAB's bicubic ``imresize``."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
        t = torch.from_numpy(np.array(img, copy=True) if not img.flags.writeable else np.ascontiguousarray(img))
        t = t[None] if img.ndim == 2 else t.permute(2, 0, 1)
        if img.dtype not in (np.uint8, np.float32, np.float64):
            t = t.to(torch.float64)
        out = _resize_tensor(t, scale, size)  # type: ignore[arg-type]
        out = out[0] if img.ndim == 2 else out.permute(1, 2, 0)
        return out.numpy().astype(img.dtype if img.dtype == np.uint8 or img.dtype.kind == "f" else np.float64)
    if isinstance(img, Tensor):
        return _resize_tensor(img, scale, size)  # type: ignore[arg-type]
    raise TypeError(f"imresize expects a numpy array or a torch tensor, got {type(img).__name__}")
