"""The training degradation's settings (``data.degrade.*``), apart from :mod:`.degrade` so
that reading a config (and ``seemore train --help``) does not import torch."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DegradeConfig"]


@dataclass(frozen=True)
class DegradeConfig:
    """The random degradation of training patches (``data.degrade.*`` in a recipe).

    Ranges are ``[low, high]``, drawn uniformly unless said otherwise; noise sigmas are on
    the 0..255 scale. The defaults cover the photos the ``-real`` weights are for (phone
    and web JPEGs, sensor noise, mild blur) with some margin past the evaluation presets,
    so the weights are not tuned to the presets.
    """

    enabled: bool = False
    clean: float = 0.4  # share of patches left as clean MATLAB-bicubic LR: clean inputs must lose little
    blur: float = 0.7  # probability of a blur before the downscale
    # x scale: 0.2-1.0 px at x2, 0.4-2.0 at x4. Up to 0.7 x scale, the x2 weights lost 1.5 dB on clean
    # Set5 a third of the way through their run (sharpening what was never blurred): 0.5 covers the
    # mixed preset's blur and costs clean inputs less
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 0.5])
    anisotropic: float = 0.35  # share of blurs with two sigmas and a random angle (motion, astigmatism)
    resize_mid: float = 0.3  # probability of a detour through a random intermediate size
    resize_mid_range: list[float] = field(default_factory=lambda: [0.5, 1.2])  # of the HR side (>= 1/scale)
    noise: float = 0.65  # probability of noise
    gaussian_sigma: list[float] = field(default_factory=lambda: [1.0, 18.0])  # presets: 5, 10
    poisson: float = 0.35  # share of noise that is Poisson (shot noise) instead of Gaussian
    poisson_peak: list[float] = field(default_factory=lambda: [150.0, 4000.0])  # photons at white, log-uniform
    gray_noise: float = 0.35  # share of noise that is the same on all channels (luma noise)
    jpeg: float = 0.75  # probability of a JPEG encode
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 95])  # presets: 50, 60, 70, 90
    second: float = 0.2  # probability of a second, lighter round at the LR size (Real-ESRGAN's second order)
    second_sigma: list[float] = field(default_factory=lambda: [0.2, 0.8])  # the second round's blur, in LR px

    def validate(self) -> str | None:
        """What is wrong with the ranges (a message naming the key), or None."""
        for key in ("clean", "blur", "anisotropic", "resize_mid", "noise", "poisson", "gray_noise", "jpeg", "second"):
            if not 0 <= getattr(self, key) <= 1:
                return f"data.degrade.{key}: a probability from 0 to 1, got {getattr(self, key)}"
        for key in ("blur_sigma", "resize_mid_range", "gaussian_sigma", "poisson_peak", "jpeg_quality", "second_sigma"):
            v = getattr(self, key)
            if len(v) != 2 or not 0 < v[0] <= v[1]:
                return f"data.degrade.{key}: a range [low, high] with 0 < low <= high, got {v}"
        if self.jpeg_quality[1] > 100:
            return f"data.degrade.jpeg_quality: qualities from 1 to 100, got {self.jpeg_quality}"
        return None
