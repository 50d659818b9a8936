"""The denoise strength: network interpolation between clean and ``-real`` weights, and the
strength an image asks for.

``S`` from 0 to 1 takes every parameter ``(1 - S) * clean + S * real`` (Real-ESRGAN's
``-dn``, Wang et al.'s network interpolation): both networks have the same architecture,
so the blend is one network, exact and as fast as either end.

``auto`` decides per image from the input alone (:func:`estimate`):

- a JPEG's quantisation tables give its quality (the IJG scaling, read back from the
  luma table); without the file (an array), a blockiness measure stands in for it: how
  much stronger the luma steps are across the 8x8 grid than beside it;
- the noise is a robust estimate from a high-pass of the luma (Immerkaer 1996's
  Laplacian-difference operator) in the flattest blocks of the image, where texture does
  not pass for noise.

Each cue maps to a strength by a linear ramp between a level the clean weights handle
(0) and one the real weights are for (1); the image gets the larger of the two.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import nn

__all__ = ["Estimate", "estimate", "jpeg_quality", "noise_sigma", "blockiness", "blend_state", "blended", "AUTO_STEP"]

AUTO_STEP = 0.1  # auto strengths are rounded to this step: one blended network per step, reused

# The ramps: (level where the strength starts above 0, level where it reaches 1), placed by
# scripts/calibrate_denoise.py: on 48 training photos (never benchmark images), x2 and x4,
# clean, JPEG q30-95, noise sigma 0.5-15 and blur + noise + JPEG, the ramps whose strengths
# lose the least PSNR against each image's best strength (campaign/results/
# denoise-calibration.json: 0.069 dB lost on average, against 0.124 for the ramps placed by
# eye before, 0.113 for a fixed 1 and 0.518 for a fixed 0; the kinds weighted alike).
QUALITY_RAMP = (100.0, 90.0)  # JPEG quality from the file's tables: 90 and below fully real
BLOCKINESS_RAMP = (1.05, 1.08)  # the 8x8 grid's luma steps over the others' (1.0 for no grid)
NOISE_RAMP = (1.5, 8.0)  # luma noise sigma on 0..255
# The flattest blocks' response is biased low (the 10th percentile of noisy block means):
# measured on training photos with Gaussian noise of sigma 3, 5, 10 and 15 added, the raw
# estimate is 0.62 sigma (within 5% over that range), so it is scaled back by 1 / 0.62.
NOISE_GAIN = 1.62

# The IJG standard luminance table (JPEG Annex K), which libjpeg scales by the quality.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_IJG_LUMA * scale + 50) / 100), 1, 255)


def jpeg_quality(im: Image.Image) -> int | None:
    """The quality a JPEG was saved at, read from its luma quantisation table (the IJG
    quality whose table is nearest, order-free), or None for an image that is not a JPEG."""
    tables = getattr(im, "quantization", None)
    if not tables:
        return None
    luma = np.asarray(tables[min(tables)], dtype=np.float64)
    if luma.size != 64:
        return None
    return int(min(range(1, 101), key=lambda q: abs(_ijg_table(q).sum() - luma.sum())))


def _luma(a: np.ndarray) -> np.ndarray:
    """float64 luma on 0..255 of an (H, W) or (H, W, C) uint8 / uint16 / float image."""
    x = a.astype(np.float64)
    if a.dtype == np.uint16:
        x /= 257
    elif a.dtype.kind == "f":
        x *= 255
    if x.ndim == 3:
        x = x[..., :3] @ [0.299, 0.587, 0.114] if x.shape[2] >= 3 else x[..., 0]
    return x


def noise_sigma(a: np.ndarray) -> float:
    """Gaussian noise sigma (0..255) of an image's luma: Immerkaer's operator
    ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`` (blind to planes and linear ramps), its mean
    absolute response in 16x16 blocks, the 10th percentile of the blocks (the flattest,
    where texture does not pass for noise), scaled to sigma by :data:`NOISE_GAIN`."""
    y = _luma(a)
    lap = np.abs(
        4 * y[1:-1, 1:-1]
        - 2 * (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:])
        + (y[:-2, :-2] + y[:-2, 2:] + y[2:, :-2] + y[2:, 2:])
    )
    b = 16 if min(lap.shape) >= 64 else 4
    h, w = lap.shape[0] // b * b, lap.shape[1] // b * b
    if h == 0 or w == 0:
        return 0.0
    blocks = lap[:h, :w].reshape(h // b, b, w // b, b).mean((1, 3))
    # E|N * M| = sigma * sqrt(2 / pi) * 6 for Gaussian noise N (the kernel's L2 norm is 6)
    return float(np.percentile(blocks, 10) * np.sqrt(np.pi / 2) / 6 * NOISE_GAIN)


def blockiness(a: np.ndarray) -> float:
    """Mean absolute luma step across the 8x8 grid's lines over the mean step elsewhere,
    both directions: about 1 for an image without JPEG blocks, more the coarser the JPEG."""
    y = _luma(a)
    if min(y.shape) < 32:
        return 1.0
    ratios = []
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        idx = np.arange(d.shape[1])
        on = (idx % 8) == 7  # the step between columns 8k-1 and 8k
        other = d[:, ~on].mean()
        ratios.append(d[:, on].mean() / other if other > 1e-6 else 1.0)
    return float(np.mean(ratios))


def _ramp(v: float, ramp: tuple[float, float]) -> float:
    """0 at ``ramp[0]``, 1 at ``ramp[1]``, linear between, clipped (either may be the larger)."""
    start, full = ramp
    return float(np.clip((v - start) / (full - start), 0.0, 1.0))


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate` read off an image, and the strength it gives."""

    strength: float
    quality: int | None  # the JPEG quality from the file's tables, None when not a JPEG file
    blockiness: float | None  # the grid measure, when there were no tables to read
    noise: float  # luma noise sigma, 0..255

    def describe(self) -> str:
        cue = f"JPEG q{self.quality}" if self.quality is not None else f"blockiness {self.blockiness:.2f}"
        return f"denoise {self.strength:.1f} (auto: {cue}, noise {self.noise:.1f})"


def estimate(image: Image.Image | np.ndarray) -> Estimate:
    """The denoise strength ``auto`` gives ``image`` (a PIL image, from a file or not, or an
    array): the larger of its JPEG and noise cues, rounded to :data:`AUTO_STEP`."""
    quality = jpeg_quality(image) if isinstance(image, Image.Image) else None
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
    sigma = noise_sigma(image)
    if quality is not None:
        block, s_jpeg = None, _ramp(quality, QUALITY_RAMP)  # a falling ramp: 0 at 100, 1 from 90 down
    else:
        block = blockiness(image)
        s_jpeg = _ramp(block, BLOCKINESS_RAMP)
    s = max(s_jpeg, _ramp(sigma, NOISE_RAMP))
    return Estimate(round(round(s / AUTO_STEP) * AUTO_STEP, 2), quality, block, sigma)


def blend_state(clean: dict, real: dict, strength: float) -> dict:
    """``(1 - strength) * clean + strength * real``, parameter by parameter (same keys and shapes)."""
    if clean.keys() != real.keys():
        raise ValueError("the clean and real weights have different parameters")
    return {k: clean[k] if not clean[k].is_floating_point() else clean[k].lerp(real[k], strength) for k in clean}


def blended(clean: nn.Module, real: nn.Module, strength: float) -> nn.Module:
    """A new module: ``clean``'s copy holding :func:`blend_state` of both at ``strength``
    (both left as they are)."""
    net = copy.deepcopy(clean)
    net.load_state_dict(blend_state(clean.state_dict(), real.state_dict(), strength))
    return net
