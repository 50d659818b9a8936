"""PSNR and SSIM on the Y channel, as the SR literature's MATLAB scripts compute them.

Images are 8-bit-quantised before measuring (an SR output is rounded to uint8 the way
it would be saved). RGB is converted with MATLAB's ``rgb2ycbcr`` (BT.601, Y in
[16, 235]); a single-channel image is its own Y (no BT.601 scaling), as in the
published scripts. ``crop_border`` pixels are ignored on every side.

Two implementations: :func:`psnr` / :func:`ssim` take ``(H, W[, C])`` numpy arrays and
compute in float64 (the reference); :func:`psnr_torch` / :func:`ssim_torch` take
batched ``(N, C, H, W)`` tensors in [0, 1] and agree with the reference to 1e-6 dB.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_y", "psnr", "ssim", "psnr_torch", "ssim_torch", "quantize"]

_Y = np.array([65.481, 128.553, 24.966]) / 255.0


def quantize(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8, rounding as saving would; uint8 passes through."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.floor(img.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def to_y(img: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB or ``(H, W[, 1])`` gray -> float64 Y on the 0..255 scale."""
    img = quantize(img).astype(np.float64)
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[..., 0]
    if img.shape[2] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {img.shape[2]}")
    return img @ _Y + 16.0


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ya, yb = to_y(a), to_y(b)
    if crop_border:
        ya = ya[crop_border:-crop_border, crop_border:-crop_border]
        yb = yb[crop_border:-crop_border, crop_border:-crop_border]
    return ya, yb


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """PSNR (dB) between two images on Y, ``crop_border`` pixels ignored at each side."""
    ya, yb = _prepare(a, b, crop_border)
    mse = np.mean((ya - yb) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size) - size // 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    g = np.outer(g, g)
    return g / g.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    return np.einsum("ijkl,kl->ij", sliding_window_view(x, k.shape), k)


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """SSIM on Y (Wang et al.: 11x11 Gaussian, sigma 1.5, 'valid' window), float64."""
    ya, yb = _prepare(a, b, crop_border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = _gaussian()
    mu1, mu2 = _filter_valid(ya, k), _filter_valid(yb, k)
    s11 = _filter_valid(ya * ya, k) - mu1**2
    s22 = _filter_valid(yb * yb, k) - mu2**2
    s12 = _filter_valid(ya * yb, k) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(m.mean())


# ----------------------------------------------------------------------------- torch


def _y_torch(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` in [0, 1] -> quantised Y ``(N, 1, H, W)`` float64 on 0..255."""
    x = torch.floor(x.double().clamp(0, 1) * 255.0 + 0.5)
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_Y, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) + 16.0


def _prepare_torch(a: Tensor, b: Tensor, crop_border: int) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    ya, yb = _y_torch(a), _y_torch(b)
    if crop_border:
        ya = ya[..., crop_border:-crop_border, crop_border:-crop_border]
        yb = yb[..., crop_border:-crop_border, crop_border:-crop_border]
    return ya, yb


def psnr_torch(a: Tensor, b: Tensor, crop_border: int = 0) -> Tensor:
    """Per-image PSNR on Y, shape ``(N,)``, for ``(N, C, H, W)`` tensors in [0, 1]."""
    ya, yb = _prepare_torch(a, b, crop_border)
    mse = ((ya - yb) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


def ssim_torch(a: Tensor, b: Tensor, crop_border: int = 0) -> Tensor:
    """Per-image SSIM on Y, shape ``(N,)``, for ``(N, C, H, W)`` tensors in [0, 1]."""
    ya, yb = _prepare_torch(a, b, crop_border)
    k = torch.from_numpy(_gaussian()).to(ya).view(1, 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def f(x: Tensor) -> Tensor:
        return F.conv2d(x, k)

    mu1, mu2 = f(ya), f(yb)
    s11 = f(ya * ya) - mu1**2
    s22 = f(yb * yb) - mu2**2
    s12 = f(ya * yb) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return m.mean(dim=(1, 2, 3))
