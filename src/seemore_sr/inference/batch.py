"""``seemore upscale``: many files in, outputs written atomically, failures reported per file."""

from __future__ import annotations

import os
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .._fs import atomic_path, remove_stale_parts
from ..data.images import regular_file
from ..errors import OptionError, Refused
from .inputs import collect_inputs
from .upscaler import Upscaler
from .video import is_video, join_segments, output_for, plan_video, run_segments, upscale_video

__all__ = [
    "collect_inputs",
    "open_checked",
    "output_format",
    "output_path",
    "probe",
    "upscale_files",
    "Summary",
    "FORMATS",
    "MAX_PIXELS",
    "shown",
]

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF"}
# Our own input limit (pixels; callers raise it, e.g. `seemore upscale --max-pixels`). Pillow's bomb
# guard is set to the same level while a file is opened, so a file that claims more is refused
# before it is decoded. The messages here name no command-line flags: the CLI and the web app share them.
MAX_PIXELS = 200_000_000
_PIL_GUARD = threading.Lock()
ORIENTATION = 0x0112  # the EXIF tag


def shown(path: object) -> str:
    """A path as printed in one-line messages: quoted when it holds control characters."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    remedies: set[str] = field(default_factory=set)  # Refused.remedy of the failures: what would help
    seconds: float = 0.0
    joins: list = field(default_factory=list)  # videos whose segments ranks share: (plan, replace), joined last
    strengths: list[float] = field(default_factory=list)  # denoise "auto": the strength each image got

    def line(self) -> str:
        line = f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed in {self.seconds:.1f}s"
        if self.strengths:
            lo, hi = min(self.strengths), max(self.strengths)
            line += f"; denoise (auto) {lo:.1f}" + (f" to {hi:.1f}" if hi > lo else "")
        return line


def output_format(src: Path, fmt: str | None) -> tuple[str, str]:
    """``(extension, Pillow format)`` of the output: ``fmt``, else the input's, else PNG
    for inputs we read but do not write (BMP, GIF)."""
    ext = (fmt or src.suffix.lstrip(".")).lower()
    if ext in FORMATS:
        return ext, FORMATS[ext]
    if fmt:
        raise OptionError("fmt", fmt, "cannot write this format; choose png, jpg, webp or tiff")
    return "png", "PNG"


def output_path(src: Path, outdir: Path, suffix: str, fmt: str | None, sub: Path = Path()) -> Path:
    ext, _ = output_format(src, fmt)
    return outdir / sub / f"{src.stem}{suffix}.{ext}"


def open_checked(path: Path, max_pixels: int = MAX_PIXELS, *, decode: bool = True) -> Image.Image:
    """``path`` checked (size limits, bomb guard, frames, channels) and decoded, upright.
    ``decode=False``: the header and metadata only, for files whose pixels are read elsewhere."""
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _PIL_GUARD.acquire()  # Pillow's guard is process-wide: one thread (the web app has two) sets it
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels  # Pillow's guard at our limit
            try:
                with Image.open(path) as im:
                    if im.width * im.height > max_pixels:
                        raise Refused(
                            f"{im.width}x{im.height} is over the {max_pixels:,} pixel limit "
                            "(raise the pixel limit if the image is real)",
                            remedy="max_pixels",
                        )
                    if getattr(im, "n_frames", 1) > 1:
                        raise ValueError(f"animated image ({im.n_frames} frames); only single images are upscaled")
                    if decode:
                        im.load()
                        info, tables = dict(im.info), getattr(im, "quantization", None)
                        tags = dict(getattr(im, "tag_v2", {}) or {}) if im.format == "TIFF" else {}
                        exif = im.getexif() if info.get("exif") else None  # a camera's EXIF block (not TIFF tags)
                        im = ImageOps.exif_transpose(im)
                        im.info.update({k: v for k, v in info.items() if k in ("icc_profile", "dpi")})
                        if exif:  # the camera's make, model and date kept; the orientation is applied
                            exif[ORIENTATION] = 1
                            im.info["exif"] = exif.tobytes()
                        bits = info.get("bits_dropped") or _tiff_depth(tags)
                        if bits:
                            im.info["bits_dropped"] = bits
                        if tables:  # a JPEG's quality, for the denoise strength "auto" (inference/denoise.py)
                            im.quantization = tables
            finally:
                Image.MAX_IMAGE_PIXELS = old
                _PIL_GUARD.release()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Refused(
            f"over the {max_pixels:,} pixel limit, a possible decompression bomb ({e}); "
            "raise the pixel limit if the image is real",
            remedy="max_pixels",
        ) from None
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


def _tiff_depth(tags: dict) -> str:
    """What Pillow drops of a TIFF's depth, in words ("" when nothing): it reads 16-bit
    colour TIFFs as 8 bits a channel (16-bit gray it keeps)."""
    bits = tags.get(258)
    bits = bits if isinstance(bits, tuple) else (bits,) if bits else ()
    if len(bits) >= 3 and max(bits) > 8:
        return f"a {max(bits)}-bit colour TIFF is read at 8 bits a channel here (a 16-bit PNG keeps its depth)"
    return ""


def probe(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, after the checks made before
    any upscale (size limits, bomb guard, frames, channels); ``ValueError`` names the problem."""
    im = open_checked(path, max_pixels, decode=False)
    return im.width, im.height


def _png16_colour(path: Path) -> bool:
    """Whether ``path`` is a 16-bit colour PNG, which Pillow would read as 8 bits."""
    with path.open("rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit RGB or RGBA PNG at full depth, ``(H, W, 3 | 4)`` uint16 (with pypng: Pillow
    has no 16-bit colour mode). Size limits are checked by :func:`open_checked` before this runs."""
    import png

    try:
        w, h, rows, info = png.Reader(filename=str(path)).asDirect()
        if info["planes"] == 2:
            raise ValueError("16-bit gray + alpha PNG is not supported; convert it to RGBA or to 8 bits")
        a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    except png.Error as e:
        raise ValueError(f"unreadable or truncated PNG ({e})") from None
    return a.reshape(h, w, info["planes"])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16_bytes(a: np.ndarray, info: dict) -> bytes:
    """``(H, W, 3 | 4)`` uint16 as a 16-bit PNG (Up filter), with the input's ICC profile and DPI."""
    h, w, c = a.shape
    rows = a.astype(">u2", order="C").view(np.uint8).reshape(h, w * c * 2)
    up = rows.copy()
    up[1:] -= rows[:-1]  # the Up filter, modulo 256
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0))]
    icc = info.get("icc_profile")
    if icc and _icc_space(icc) == "RGB":
        out.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if "dpi" in info:
        x, y = (round(float(d) / 0.0254) for d in info["dpi"])
        out.append(_chunk(b"pHYs", struct.pack(">IIB", x, y, 1)))
    out += [_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), _chunk(b"IEND", b"")]
    return b"".join(out)


def _icc_space(icc: bytes) -> str | None:
    """The colour space an ICC profile describes (``RGB``, ``GRAY``, ``CMYK``...), from its header."""
    return icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 20 else None


def _check_format(im: Image.Image, fmt: str) -> None:
    """Refuse, before any compute, an output format that cannot hold the result."""
    alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if alpha and fmt == "JPEG":
        a = im.convert("RGBA").getchannel("A")
        if a.getextrema() != (255, 255):  # an opaque alpha is dropped, so that is fine
            raise Refused("JPEG cannot hold an alpha channel; choose PNG or WebP output", remedy="fmt")
    if im.mode == "F" and fmt != "TIFF":
        raise Refused("32-bit float image: only TIFF keeps its values here; choose TIFF output", remedy="fmt")
    if im.mode in ("I;16", "I;16B", "I;16L", "I") and fmt in ("JPEG", "WEBP"):
        raise Refused(
            f"{'JPEG' if fmt == 'JPEG' else 'WebP'} cannot hold 16-bit images; choose PNG or TIFF output", "fmt"
        )


def _save_atomic(im: Image.Image, dst: Path, fmt: str, info: dict, replace: bool, quality: int = 95) -> None:
    kwargs: dict = {}
    icc = info.get("icc_profile")
    out_space = {"L": "GRAY", "LA": "GRAY", "I;16": "GRAY", "I": "GRAY"}.get(im.mode, "RGB")
    if icc and fmt in ("PNG", "JPEG", "WEBP", "TIFF") and _icc_space(icc) == out_space:
        kwargs["icc_profile"] = icc  # only a profile that describes the pixels written
    if "dpi" in info and fmt in ("PNG", "JPEG", "TIFF"):
        kwargs["dpi"] = info["dpi"]
    if info.get("exif") and fmt in ("PNG", "JPEG", "WEBP"):
        kwargs["exif"] = info["exif"]
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    _check_format(im, fmt)
    with atomic_path(dst, replace=replace) as tmp:
        im.save(tmp, format=fmt, **kwargs)


def _check_output_size(upscaler: Upscaler, size: tuple[int, int]) -> None:
    """Refuse an output that cannot fit in memory before any compute (``outscale=500``
    asked for a 9.2 GB allocation and ended the batch with a traceback)."""
    from .tiling import available_bytes

    s = getattr(upscaler, "outscale", None) or getattr(upscaler, "scale", 1)
    w, h = max(1, round(size[0] * s)), max(1, round(size[1] * s))
    need = w * h * 4 * 4  # float32 RGBA: the largest working copy of the output
    free = available_bytes(torch.device("cpu"))
    if need > free // 2:
        raise Refused(
            f"the output would be {w}x{h} ({need / 2**30:.1f} GB as floats), more than half of this machine's "
            f"free memory ({free / 2**30:.1f} GB); lower the final scale or upscale a smaller image",
            remedy="outscale",
        )


def upscale_files(
    upscaler: Upscaler,
    files: list[Path],
    outdir: Path,
    *,
    suffix: str = "",
    fmt: str | None = None,
    quality: int = 95,  # JPEG / WebP
    video_options: dict | None = None,  # upscale_video's codec, crf
    existing: str = "error",  # error | overwrite | skip
    progress: bool = True,
    log=print,
    max_pixels: int = MAX_PIXELS,
    subdirs: dict[Path, Path] | None = None,
    share: tuple[int, int] = (0, 1),
    name: str | None = None,
    report_done: bool = False,
) -> Summary:
    """Upscale ``files`` into ``outdir`` (mirroring folder scans' subfolders), one line per failure.

    The output folder is checked before any compute; each output's format is checked
    against its input before the upscale; a file is moved into place only if no other
    run wrote it meanwhile (unless ``existing="overwrite"``).

    ``share=(rank, world)``: this process does every ``world``-th item of the work, the
    items being the image files and the videos' segments (:mod:`.video`), listed the same
    way by every rank; the videos are then left to join (``Summary.joins``:
    :func:`join_videos`, once every rank is done). Alone (``world`` 1) a video is made and
    joined in turn. ``name``: the one input's output file name in ``outdir`` (its extension
    picks the format). ``report_done``: ``log`` a line per finished file (for logs). A folder
    this call made is removed again when nothing was written into it.
    """
    fmt = _check_request(files, outdir, fmt, quality, name)
    made = _prepare_outdir(outdir, {outdir / (subdirs or {}).get(f, Path()) for f in files})
    job = _Batch(upscaler, outdir, suffix, fmt, quality, dict(video_options or {}), existing, log, max_pixels,
                 subdirs or {}, name, report_done, {f.resolve() for f in files})  # fmt: skip
    start = time.perf_counter()
    rank, world = share
    work = _shared_work(job, files) if world > 1 else files
    work = work[rank::world]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), unit="img", dynamic_ncols=True)
        job.say = bar.write
    for item in work:
        src = item if isinstance(item, Path) else item[1]
        try:
            if isinstance(item, Path):
                job.video(src, bar) if is_video(src) else job.image(src)
            else:
                job.listed(item)
        except (ValueError, OSError, MemoryError) as e:
            job.failed(src, e)
        finally:
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    job.summary.seconds = time.perf_counter() - start
    if not job.summary.joins:
        _remove_empty(made)  # a run that wrote nothing leaves no folder it made
    return job.summary


def _check_request(files: list[Path], outdir: Path, fmt: str | None, quality: int, name: str | None) -> str | None:
    """The options checked before anything is made; the output format (``-o result.jpg``: jpg)."""
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise OptionError("quality", quality, "must be an integer from 1 to 100")
    if name is not None and len(files) != 1:
        raise OptionError("outdir", shown(outdir / name), "names one output file, for one input")
    if name is not None and not is_video(Path(name)):  # -o result.jpg: JPEG
        ext = Path(name).suffix.lstrip(".").lower()
        if ext not in FORMATS:
            raise OptionError("fmt", ext, "cannot write this format; choose png, jpg, webp or tiff")
        if fmt is not None and FORMATS.get(fmt.lower()) != FORMATS[ext]:
            raise OptionError("fmt", fmt, f"differs from the output file's extension ({name})")
        fmt = ext
    if outdir.exists() and not outdir.is_dir():
        raise OptionError("outdir", shown(outdir), "is a file, not a folder")
    return fmt


def _prepare_outdir(outdir: Path, folders: set[Path]) -> list[Path]:
    """Make ``outdir`` (checked writable) and clear what a killed run left in ``folders``;
    returns the folders made here (removed again if nothing is written)."""
    made = [p for p in (outdir, *outdir.parents) if not p.exists()]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptionError("outdir", shown(outdir), f"cannot create the output folder ({e.strerror or e})") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        _remove_empty(made)
        raise OptionError("outdir", shown(outdir), "the output folder is not writable")
    for folder in folders | {outdir}:
        if folder.is_dir():
            remove_stale_parts(folder)  # left by a killed run
    return made


@dataclass
class _Batch:
    """One :func:`upscale_files` call's settings and record: one method per kind of work item."""

    upscaler: Upscaler
    outdir: Path
    suffix: str
    fmt: str | None
    quality: int
    video_options: dict
    existing: str
    log: Callable[[str], None]
    max_pixels: int
    subdirs: dict[Path, Path]
    name: str | None
    report_done: bool
    inputs: set[Path]
    summary: Summary = field(default_factory=Summary)
    say: Callable[[str], None] | None = None  # where one-line messages go: the bar's write, else log

    def __post_init__(self) -> None:
        self.say = self.say or self.log

    def video_out(self, src: Path) -> tuple[Path, dict]:
        """Where a video goes and its encoding options, its container and encoder decided
        before any compute (video.output_for: the codec asked for, else its container's)."""
        dst = self.outdir / (self.name or Path(self.subdirs.get(src, Path()), f"{src.stem}{self.suffix}{src.suffix}"))
        dst, codec = output_for(src, dst, self.video_options.get("codec"))
        return dst, {**self.video_options, "codec": codec}

    def frame_check(self, size: tuple[int, int]) -> None:
        """A video's frames meet the images' limits before any is decoded."""
        w, h = size
        if w * h > self.max_pixels:
            raise Refused(
                f"{w}x{h} frames are over the {self.max_pixels:,} pixel limit (raise the pixel limit if they are real)",
                remedy="max_pixels",
            )
        _check_output_size(self.upscaler, size)

    def listed(self, item: tuple) -> None:
        """A video's segment, or a failure or skip found while listing (torchrun's shared work)."""
        kind, src, detail = item
        if kind == "skip":
            self.summary.skipped.append(src)
        elif kind == "fail":
            raise detail
        elif all(failed != str(src) for failed, _ in self.summary.failed):  # one failure per video
            plan, k = detail
            run_segments(self.upscaler, plan, [k])

    def video(self, src: Path, bar) -> None:
        dst, options = self.video_out(src)
        if not _output_free(src, dst, self.inputs, self.existing):
            self.summary.skipped.append(src)
            return
        with _frames_bar(bar) as report, _not_written_meanwhile(dst):
            plan = upscale_video(
                self.upscaler, src, dst, replace=self.existing == "overwrite", progress=report,
                check_frame=self.frame_check, **options,
            )  # fmt: skip
        if self.report_done:
            self.log(f"done: {shown(src)} -> {shown(plan.dst)}")
        if plan.info.get("dropped"):
            self.say(f"note: {shown(src)}: {plan.info['dropped']}")
        if plan.info.get("denoise") is not None:
            self.summary.strengths.append(plan.info["denoise"].strength)
            self.say(f"{shown(src)}: {plan.info['denoise'].describe()}, from its first frames")
        self.summary.done.append(dst)

    def image(self, src: Path) -> None:
        out_fmt = output_format(src, self.fmt)[1]
        sub = self.subdirs.get(src, Path())
        dst = self.outdir / self.name if self.name else output_path(src, self.outdir, self.suffix, self.fmt, sub)
        if not _output_free(src, dst, self.inputs, self.existing):
            self.summary.skipped.append(src)
            return
        deep = _png16_colour(src)
        im = open_checked(src, self.max_pixels, decode=not deep)  # a 16-bit colour PNG: limits, ICC, DPI; pypng decodes
        _check_output_size(self.upscaler, im.size)
        if im.info.get("bits_dropped"):
            self.say(f"note: {shown(src)}: {im.info['bits_dropped']}")
        if deep and out_fmt != "PNG":
            raise Refused("16-bit colour input: only PNG keeps its depth here; choose PNG output", remedy="fmt")
        _check_format(im, out_fmt)
        out = self.upscaler(_read_png16(src) if deep else im)
        if getattr(self.upscaler, "auto", False) and self.upscaler.estimate is not None:
            self.summary.strengths.append(self.upscaler.estimate.strength)
            self.say(f"{shown(src)}: {self.upscaler.estimate.describe()}")
        replace = self.existing == "overwrite"
        try:
            if deep:
                with atomic_path(dst, replace=replace) as tmp:
                    tmp.write_bytes(_png16_bytes(out, im.info))
            else:
                _save_atomic(out, dst, out_fmt, im.info, replace=replace, quality=self.quality)
        except FileExistsError:
            if self.existing == "skip":
                self.summary.skipped.append(src)
                return
            raise ValueError(f"output {dst} was written by another run meanwhile; left as it is") from None
        self.summary.done.append(dst)
        if self.report_done:  # a log, not a terminal: one line per finished file
            self.log(f"done: {shown(src)} -> {shown(dst)}")

    def failed(self, src: Path, e: BaseException) -> None:
        if isinstance(e, MemoryError):
            e = Refused("out of memory (try smaller tiles)", remedy="tile")
        self.summary.failed.append((str(src), str(e)))
        if isinstance(e, Refused) and e.remedy:
            self.summary.remedies.add(e.remedy)
        self.say(f"failed: {shown(src)}: {shown(e)}")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run made (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _output_free(src: Path, dst: Path, inputs: set[Path], existing: str) -> bool:
    """Whether ``src`` may be written to ``dst`` (False: skip it, as ``existing`` says);
    refused when it would overwrite an input or an existing output, or is not a regular
    file (checked before any open: a FIFO would block forever)."""
    if dst.resolve() in inputs:
        raise Refused(f"output {dst} would overwrite an input; choose another output folder or a suffix", "outdir")
    if dst.exists():
        if existing == "skip":
            return False
        if existing != "overwrite":
            raise Refused(f"output {dst} exists; overwrite or skip existing outputs", remedy="existing")
    why = regular_file(src)
    if why:
        raise Refused(why)
    return True


@contextmanager
def _not_written_meanwhile(dst: Path):
    """A video's output that another run moved into place first: left as it is."""
    try:
        yield
    except FileExistsError:
        raise ValueError(f"output {dst} was written by another run meanwhile; left as it is") from None


@contextmanager
def _frames_bar(bar):
    """A progress bar in frames (with its ETA) under the files' bar, while a video runs."""
    if bar is None:
        yield None
        return
    from tqdm import tqdm

    frames = tqdm(unit="frame", leave=False, dynamic_ncols=True)

    def report(done: int, total: int) -> None:
        frames.total = total
        frames.update(done - frames.n)

    try:
        yield report
    finally:
        frames.close()


def _shared_work(job: _Batch, files: list[Path]) -> list:
    """The work ranks share (:func:`upscale_files`), the same list on every rank: image
    files as they are, each video as its segments (``("segment", src, (plan, k))``), and
    what listing a video found instead (``("skip" | "fail", src, error)``), so that it is
    reported once, by the rank the item falls to. Every rank plans every video: reading
    its packets, no decoding."""
    work: list = []
    for src in files:
        if not is_video(src):
            work.append(src)
            continue
        try:
            dst, options = job.video_out(src)
            if not _output_free(src, dst, job.inputs, job.existing):
                work.append(("skip", src, None))
                continue
            plan = plan_video(job.upscaler, src, dst, check_frame=job.frame_check, **options)
        except (ValueError, OSError) as e:
            work.append(("fail", src, e))
            continue
        work += [("segment", src, (plan, k)) for k in range(plan.segments)]
        job.summary.joins.append((plan, job.existing == "overwrite"))
    return work


def join_videos(summary: Summary, log=print) -> None:
    """Join the videos whose segments the ranks made (``summary.joins``), unless one of
    their segments failed; rank 0's last step under torchrun."""
    failed = {name for name, _ in summary.failed}
    for plan, replace in summary.joins:
        if str(plan.src) in failed:
            continue
        try:
            with _not_written_meanwhile(plan.dst):
                join_segments(plan, replace=replace)
            summary.done.append(plan.dst)
        except (ValueError, OSError) as e:
            summary.failed.append((str(plan.src), str(e)))
            log(f"failed: {shown(plan.src)}: {shown(e)}")
    summary.joins = []
