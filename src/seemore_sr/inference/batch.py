"""``seemore upscale``: many files in, outputs written atomically, failures reported per file."""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .._fs import atomic_path
from ..data.images import IMAGE_SUFFIXES
from .upscaler import Upscaler

__all__ = ["collect_inputs", "output_path", "upscale_files", "Summary", "FORMATS"]

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF"}
Image.MAX_IMAGE_PIXELS = None  # big photos are the point; memory is handled by tiling


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed in {self.seconds:.1f}s"


def collect_inputs(items: list[str], recursive: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders and globs -> ``(image files, [(item, reason)] for items that match nothing)``."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(q for q in it if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                missing.append((item, "folder holds no images"))
            files += found
        elif p.exists():
            files.append(p)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(q) for q in glob.glob(item, recursive=recursive) if Path(q).is_file())
            if not found:
                missing.append((item, "pattern matches no files"))
            files += found
        else:
            missing.append((item, "no such file or folder"))
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, missing


def output_path(src: Path, outdir: Path, suffix: str, fmt: str | None) -> Path:
    ext = f".{fmt}" if fmt else src.suffix
    return outdir / f"{src.stem}{suffix}{ext}"


def _open(path: Path) -> Image.Image:
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        with Image.open(path) as im:
            im.load()
            info = dict(im.info)
            im = ImageOps.exif_transpose(im)
            im.info.update({k: v for k, v in info.items() if k in ("icc_profile", "dpi")})
    except UnidentifiedImageError:
        raise ValueError("not an image (unrecognised format)") from None
    except OSError as e:
        raise ValueError(f"unreadable or truncated image ({e})") from None
    if im.width == 0 or im.height == 0:
        raise ValueError("zero-sized image")
    bands = len(im.getbands())
    if bands > 4:
        raise ValueError(f"too many channels ({bands}); expected gray, RGB or RGBA")
    return im


def _save_atomic(im: Image.Image, dst: Path, fmt: str, info: dict) -> None:
    kwargs: dict = {}
    if "icc_profile" in info and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = info["icc_profile"]
    if "dpi" in info and fmt in ("PNG", "JPEG", "TIFF"):
        kwargs["dpi"] = info["dpi"]
    if fmt == "JPEG":
        kwargs["quality"] = 95
        if im.mode in ("RGBA", "LA"):
            raise ValueError("JPEG cannot hold an alpha channel; use --format png or webp")
        if im.mode == "I;16":
            raise ValueError("JPEG cannot hold 16-bit images; use --format png or tiff")
    if fmt == "WEBP":
        kwargs["quality"] = 95
        if im.mode == "I;16":
            raise ValueError("WebP cannot hold 16-bit images; use --format png or tiff")
    with atomic_path(dst) as tmp:
        im.save(tmp, format=fmt, **kwargs)


def upscale_files(
    upscaler: Upscaler,
    files: list[Path],
    outdir: Path,
    *,
    suffix: str = "",
    fmt: str | None = None,
    existing: str = "error",  # error | overwrite | skip
    progress: bool = True,
    log=print,
) -> Summary:
    summary = Summary()
    start = time.perf_counter()
    inputs = {f.resolve() for f in files}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", dynamic_ncols=True)
    for src in files:
        try:
            out_fmt = FORMATS.get((fmt or src.suffix.lstrip(".")).lower())
            if out_fmt is None:
                raise ValueError(f"cannot write format {fmt or src.suffix!r}; use --format png/jpg/webp/tiff")
            dst = output_path(src, outdir, suffix, fmt)
            if dst.resolve() in inputs:
                raise ValueError(f"output {dst} would overwrite an input; choose another -o or a --suffix")
            if dst.exists():
                if existing == "skip":
                    summary.skipped.append(src)
                    continue
                if existing != "overwrite":
                    raise ValueError(f"output {dst} exists; use --overwrite or --skip-existing")
            im = _open(src)
            out = upscaler(im)
            _save_atomic(out, dst, out_fmt, im.info)
            summary.done.append(dst)
        except (ValueError, OSError) as e:
            summary.failed.append((str(src), str(e)))
            (bar.write if bar else log)(f"failed: {src}: {e}")
        finally:
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
