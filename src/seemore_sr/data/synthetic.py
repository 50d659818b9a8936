"""Synthetic training patches: flat colours and sharp-edged shapes (against the border rim).

Photographs rarely hold a patch of one saturated colour, so a network trained on them
alone lets flat colours drift near the image border, where its convs see zero padding: a
coloured frame around screenshots, UI graphics and logos. Every training patch has a
border of its own (its edges are the network's padded edges), so patches of flat colour,
with a few sharp-edged rectangles, discs and strokes in other colours, teach it to keep
a flat colour flat up to the edge. The LR patch is the HR patch bicubic-downscaled by
the same :func:`~seemore_sr.data.imresize.imresize` as the photographs.
"""

from __future__ import annotations

import numpy as np

from .imresize import imresize

__all__ = ["synthetic_patch"]


def _colour(rng: np.random.Generator) -> np.ndarray:
    """Half saturated (each channel 0 or 255, or one of them free), half any colour."""
    kind = rng.random()
    if kind < 0.35:
        c = rng.choice([0, 255], 3)
    elif kind < 0.5:
        c = rng.choice([0, 255], 3)
        c[rng.integers(3)] = rng.integers(256)
    else:
        c = rng.integers(0, 256, 3)
    return c.astype(np.uint8)


def synthetic_patch(rng: np.random.Generator, patch: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``(lr [patch, patch, 3], hr [patch*scale, patch*scale, 3])`` uint8 pair: a flat
    colour, in half of them with 1-4 shapes (rectangles, discs, strokes) over it."""
    side = patch * scale
    hr = np.empty((side, side, 3), np.uint8)
    hr[:] = _colour(rng)
    if rng.random() < 0.5:
        yy, xx = np.mgrid[:side, :side]
        for _ in range(rng.integers(1, 5)):
            shape = rng.integers(3)
            y0, x0 = rng.integers(0, side, 2)
            if shape == 0:  # a rectangle, often cut by the patch's edge
                h, w = rng.integers(side // 8, side, 2)
                mask = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
            elif shape == 1:  # a disc
                r = rng.integers(side // 10, side // 2)
                mask = (yy - y0) ** 2 + (xx - x0) ** 2 <= r * r
            else:  # a stroke, like text or a UI rule: 1-4 HR pixels wide
                t = rng.integers(1, 5)
                mask = (np.abs(yy - y0) < t) if rng.random() < 0.5 else (np.abs(xx - x0) < t)
            hr[mask] = _colour(rng)
    return imresize(hr, 1 / scale), hr
