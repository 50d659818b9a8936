"""Degradations: the random pipeline that trains the ``-real`` weights, and the named presets
that evaluate them.

Training (:func:`degrade_patch`) follows Real-ESRGAN's recipe, made milder where a
fidelity model (L1 + FFT, no GAN) would only learn to smear: Gaussian blur (isotropic or
anisotropic) on the HR patch, a downscale to the LR size by a random kernel (bicubic,
bilinear or area, sometimes through a random intermediate size), Gaussian or Poisson noise
(colour or gray), a real JPEG encode (libjpeg through Pillow, the encoder the photos came
from), and sometimes a second, lighter round of blur, noise and JPEG at the LR size. Every
draw comes from the generator it is given, so a batch stays a pure function of
``(seed, iteration)`` and a resumed run is bit-exact.

Evaluation (:func:`degrade_lr`, :data:`PRESETS`) applies one fixed degradation to a
benchmark's LR image, after the usual MATLAB-bicubic downscale; its random draws are seeded
from the image's name, so every run on every machine gets the same inputs.

Pillow and torch do every stage: Pillow's JPEG is the libjpeg photos are made with, and
torch's antialiased ``interpolate`` and ``conv2d`` do the resizes and blurs in a few
hundred microseconds a patch. torchvision's v2 transforms would add a package whose
builds must match torch's exactly (PyPI's fails to import beside the CPU build used here),
for the same calls.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .degrade_config import DegradeConfig
from .imresize import imresize

__all__ = ["DegradeConfig", "PRESETS", "degrade_patch", "degrade_lr", "gaussian_kernel", "jpeg", "preset_names"]


# -- the stages -------------------------------------------------------------------------------------


def gaussian_kernel(sigma_x: float, sigma_y: float | None = None, angle: float = 0.0) -> np.ndarray:
    """A normalised 2-D Gaussian, ``2 ceil(3 sigma) + 1`` wide (odd, at least 3); anisotropic
    when ``sigma_y`` differs, its axes turned by ``angle`` radians."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    r = max(1, math.ceil(3 * max(sigma_x, sigma_y)))
    ax = np.arange(-r, r + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def blur(img: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``img`` [3, H, W] float convolved with ``kernel`` per channel, edges reflected."""
    k = torch.from_numpy(kernel).to(img.dtype)
    r = k.shape[0] // 2
    pad = min(r, img.shape[1] - 1, img.shape[2] - 1)
    x = F.pad(img[None], (pad,) * 4, mode="reflect")
    if pad < r:  # a kernel wider than the image: the reflected rim, then zeros (only in tiny tests)
        x = F.pad(x, (r - pad,) * 4, mode="replicate")
    return F.conv2d(x, k.expand(3, 1, -1, -1), groups=3)[0]


def resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``img`` [3, H, W] to ``size`` (h, w) by ``bicubic`` / ``bilinear`` (antialiased) or ``area``."""
    if tuple(img.shape[1:]) == size:
        return img
    if mode == "area":
        return F.interpolate(img[None], size=size, mode="area")[0]
    down = size[0] < img.shape[1]
    return F.interpolate(img[None], size=size, mode=mode, align_corners=False, antialias=down)[0]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[3, H, W] float in 0..255 to (H, W, 3) uint8, rounded and clipped."""
    return img.round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def add_noise(
    img: np.ndarray, rng: np.random.Generator, sigma: float | None, peak: float | None, gray: bool
) -> np.ndarray:
    """Gaussian noise of ``sigma`` (0..255), or Poisson noise of ``peak`` photons at white, on
    uint8 ``img``; ``gray``: one noise field for all channels. Rounded and clipped."""
    x = img.astype(np.float32)
    shape = img.shape[:2] + ((1,) if gray else (3,))
    if sigma is not None:
        n = rng.standard_normal(shape, dtype=np.float32) * sigma
    else:
        base = x.mean(2, keepdims=True) if gray else x
        n = rng.poisson(base / 255 * peak).astype(np.float32) * (255 / peak) - base
    return np.clip(np.rint(x + n), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` uint8 (H, W, 3) through a real JPEG encode and decode at ``quality``
    (Pillow's libjpeg, its default 4:2:0 chroma subsampling, as cameras and the web use)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


# -- training ---------------------------------------------------------------------------------------


def _uniform(rng: np.random.Generator, r: list[float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def _random_kernel(rng: np.random.Generator, sigma: list[float], anisotropic: float) -> np.ndarray:
    if rng.random() < anisotropic:
        return gaussian_kernel(_uniform(rng, sigma), _uniform(rng, sigma), float(rng.uniform(0, math.pi)))
    return gaussian_kernel(_uniform(rng, sigma))


def _random_noise(img: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig, weaker: float = 1.0) -> np.ndarray:
    gray = rng.random() < cfg.gray_noise
    if rng.random() < cfg.poisson:
        lo, hi = (math.log(p) for p in cfg.poisson_peak)
        return add_noise(img, rng, None, math.exp(rng.uniform(lo, hi)) / weaker, gray)
    return add_noise(img, rng, _uniform(rng, cfg.gaussian_sigma) * weaker, None, gray)


_MODES = ("bicubic", "bilinear", "area")
_MODE_P = (0.5, 0.25, 0.25)


def degrade_patch(
    hr: np.ndarray, clean_lr: np.ndarray, scale: int, rng: np.random.Generator, cfg: DegradeConfig
) -> np.ndarray:
    """The training LR for the HR patch ``hr`` (uint8, ``(p*scale, p*scale, 3)``): ``clean_lr``
    (its MATLAB-bicubic LR) for a ``cfg.clean`` share, else a random degradation of ``hr``."""
    if rng.random() < cfg.clean:
        return clean_lr
    p_h, p_w = clean_lr.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1).float()
    if rng.random() < cfg.blur:
        x = blur(x, _random_kernel(rng, [s * scale for s in cfg.blur_sigma], cfg.anisotropic))
    if rng.random() < cfg.resize_mid:
        f = max(1 / scale, _uniform(rng, cfg.resize_mid_range))
        x = resize(x, (max(p_h, round(x.shape[1] * f)), max(p_w, round(x.shape[2] * f))), str(rng.choice(_MODES)))
    x = resize(x, (p_h, p_w), str(rng.choice(_MODES, p=_MODE_P)))
    lr = to_uint8(x)
    if rng.random() < cfg.noise:
        lr = _random_noise(lr, rng, cfg)
    if rng.random() < cfg.jpeg:
        lr = jpeg(lr, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    if rng.random() < cfg.second:  # a lighter second round, at the LR size (a photo re-shared)
        lr = to_uint8(
            blur(torch.from_numpy(np.array(lr)).permute(2, 0, 1).float(), _random_kernel(rng, cfg.second_sigma, 0.0))
        )
        if rng.random() < cfg.noise:
            lr = _random_noise(lr, rng, cfg, weaker=0.5)
        if rng.random() < cfg.jpeg:
            lr = jpeg(lr, int(rng.integers(max(cfg.jpeg_quality[0], 50), cfg.jpeg_quality[1] + 1)))
    return lr


# -- evaluation presets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A fixed degradation of a benchmark's LR: ``blur`` (HR Gaussian sigma, x scale, before
    the downscale; the LR is then made anew), Gaussian ``noise`` sigma (0..255, colour),
    then JPEG ``quality``; 0 / None: that stage is skipped."""

    blur: float = 0.0
    noise: float = 0.0
    quality: int | None = None

    def describe(self, scale: int) -> str:
        parts = [f"Gaussian blur sigma {self.blur * scale:g} on HR" if self.blur else "", "MATLAB bicubic"]
        parts += [f"noise sigma {self.noise:g}" if self.noise else "", f"JPEG q={self.quality}" if self.quality else ""]
        return ", ".join(p for p in parts if p)


PRESETS: dict[str, Preset] = {
    "clean": Preset(),
    "jpeg50": Preset(quality=50),
    "jpeg70": Preset(quality=70),
    "jpeg90": Preset(quality=90),
    "noise5": Preset(noise=5),
    "noise10": Preset(noise=10),
    "mixed": Preset(blur=0.5, noise=5, quality=60),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def _seed(name: str, preset: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{preset}:{name}".encode()).digest()[:8], "little")


def degrade_lr(lr: np.ndarray, hr: np.ndarray, scale: int, preset: str, name: str) -> np.ndarray:
    """Preset ``preset`` applied to a benchmark image: ``lr`` its clean LR (uint8, H, W, 3 or
    H, W), ``hr`` its HR (cropped to a multiple of ``scale``), ``name`` what seeds the noise
    (the file's name: the same draws on every run and machine)."""
    p = PRESETS[preset]
    if p == PRESETS["clean"]:
        return lr
    gray = lr.ndim == 2
    if p.blur:
        x = torch.from_numpy(np.array(np.atleast_3d(hr), dtype=np.float32)).permute(2, 0, 1)
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        hb = to_uint8(blur(x, gaussian_kernel(p.blur * scale)))
        lr = imresize(hb[..., 0] if gray else hb, 1 / scale)
    rgb = np.repeat(lr[..., None], 3, 2) if gray else lr
    if p.noise:
        rgb = add_noise(rgb, np.random.default_rng(_seed(name, preset)), p.noise, None, gray)
    if p.quality:
        rgb = jpeg(rgb, p.quality)
    return rgb[..., 0] if gray else rgb
