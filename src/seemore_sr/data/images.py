"""Reading image folders into uint8 arrays, with clear errors."""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SeemoreError

__all__ = ["IMAGE_SUFFIXES", "ImageError", "list_images", "read_image", "regular_file"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class ImageError(SeemoreError, ValueError):
    """An image file that cannot be read; the message names the file."""


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def regular_file(path: Path) -> str | None:
    """Why ``path`` must not be opened (a FIFO would block forever, a device never ends), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device); not opened"
    return None


def read_image(path: str | Path, *, gray_ok: bool = True) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB, or ``(H, W)`` for single-channel images when ``gray_ok``.
    Pillow's decompression-bomb guard applies; every failure is an :class:`ImageError`
    naming the file."""
    path = Path(path)
    why = regular_file(path)
    if why:
        raise ImageError(f"{path}: {why}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: too many pixels, a possible decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None
    if im.mode in ("L", "I;16", "I") and gray_ok:
        arr = np.asarray(im.convert("L"))
    else:
        arr = np.asarray(im.convert("RGB"))
    if arr.size == 0:
        raise ImageError(f"{path}: empty image")
    return arr
