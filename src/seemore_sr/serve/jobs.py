"""The web app's jobs: each upload becomes a job in a bounded queue, and one worker thread
upscales the jobs in order with the same :func:`~seemore_sr.inference.batch.upscale_files`
that ``seemore upscale`` runs, so a download equals the CLI's output byte for byte.

A job lives in its own temporary folder under the queue's root. Its id is a random token,
so one browser cannot ask for another's results. A job is cancelled when asked to, or when
nobody has watched it (an open event stream, or a status request) for ``abandon_s`` seconds:
a closed tab stops its job at the next tile. Folders go when a job fails or is cancelled,
``keep_s`` after it is done, and all of them when the queue closes.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..analysis.explain import expert_ranks_of, recorded_routing
from ..data.imresize import imresize
from ..errors import SeemoreError, UsageError
from ..inference.batch import FORMATS, open_checked, probe, upscale_files
from ..inference.inputs import IMAGE_INPUTS
from ..inference.upscaler import Engine, Upscaler
from ..models.registry import clean_name

__all__ = ["Busy", "Cancelled", "Job", "Jobs", "Settings", "safe_name"]

PRECISIONS = ("fp32", "bf16")
BICUBIC_PREVIEW_PIXELS = 16_000_000
BROWSER_FORMATS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}  # shown as they are; others get a PNG preview


class Busy(SeemoreError):
    """The queue is full."""


class Cancelled(SeemoreError):
    """A job was cancelled while it ran (raised from the progress callback, between tiles)."""


@dataclass(frozen=True)
class Settings:
    """What the page chooses for one image; :meth:`parse` checks it and names a bad value."""

    model: str
    precision: str = "fp32"
    tile: int | str = "auto"
    format: str | None = None  # None: the input's (PNG for inputs that are read but not written)
    denoise: float | str | None = None  # a strength 0..1 or "auto" (models with a clean / -real pair); None: off

    @classmethod
    def parse(cls, query: dict[str, str], models: list[str]) -> Settings:
        model = query.get("model") or models[0]
        if model not in models:
            raise UsageError(f"unknown model {model!r}; this server has {', '.join(models)}")
        denoise: float | str | None = query.get("denoise") or None
        if denoise is not None:
            if denoise_pair(model, models) is None:
                raise UsageError(f"denoise needs {model}'s clean and -real weights both served")
            if denoise != "auto":
                try:
                    denoise = float(denoise)
                except ValueError:
                    denoise = -1.0
                if not 0 <= denoise <= 1:
                    raise UsageError(f"denoise must be auto or a strength from 0 to 1, got {query['denoise']!r}")
        precision = query.get("precision") or "fp32"
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        tile: int | str = query.get("tile") or "auto"
        if tile != "auto":
            if not str(tile).isdigit() or not (int(tile) == 0 or 32 <= int(tile) <= 4096):
                raise UsageError(f"tile must be auto, 0 (whole image) or a side of 32 to 4096 pixels, got {tile!r}")
            tile = int(tile)
        fmt = (query.get("format") or "").lower() or None
        if fmt is not None and fmt not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(sorted(FORMATS))} (or empty: the input's)")
        return cls(model, precision, tile, fmt, denoise)


def denoise_pair(model: str, models) -> tuple[str, str] | None:
    """``(clean, real)`` names when both weights of ``model``'s name are among ``models``."""
    clean = clean_name(model)
    return (clean, f"{clean}-real") if clean in models and f"{clean}-real" in models else None


def safe_name(name: str) -> str:
    """An uploaded file's name, reduced to a safe base name that keeps its suffix."""
    base = re.split(r"[\\/]", name or "")[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:80] or "image"
    suffix = re.sub(r"[^A-Za-z0-9]", "", suffix)[:8].lower()
    return f"{stem}.{suffix}" if suffix else stem


@dataclass
class Job:
    name: str  # the input's safe name
    folder: Path
    settings: Settings
    id: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    state: str = "uploading"  # uploading | queued | running | done | failed | cancelled
    size: tuple[int, int] = (0, 0)  # input width, height
    done_steps: int = 0
    total_steps: int = 0
    error: str = ""
    result: Path | None = None
    preview: dict[str, Path] = field(default_factory=dict)  # input / output -> a file a browser shows
    info: dict = field(default_factory=dict)  # sizes, seconds, routing, precision, tile
    created: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    seen: float = field(default_factory=time.monotonic)  # last status request or event-stream tick
    watchers: int = 0  # open event streams
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def src(self) -> Path:
        return self.folder / self.name

    @property
    def over(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def view(self, position: int = 0) -> dict:
        """What the page shows: state, progress, position in the queue, result or error."""
        out = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "done": self.done_steps,
            "total": self.total_steps,
            "position": position,
            "error": self.error,
            "width": self.size[0],
            "height": self.size[1],
        }
        if self.state == "done" and self.result is not None:
            out |= self.info | {"filename": self.result.name, "bytes": self.result.stat().st_size}
            out["has_bicubic"] = "bicubic" in self.preview
        return out


def remove_dead_servers(parent: Path) -> list[Path]:
    """Remove the ``seemore-serve-*`` folders under ``parent`` whose server is gone (killed
    with SIGKILL, say, so it could not clean up): their ``pid`` names no live process."""
    removed = []
    for folder in parent.glob("seemore-serve-*"):
        try:
            pid = int((folder / "pid").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge (no pid file: an older server's, or not a server's)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class Jobs:
    """A bounded queue of jobs and the worker thread that runs them; see the module doc."""

    def __init__(
        self,
        models: dict[str, nn.Module],
        *,
        device: str = "auto",
        max_queue: int = 8,
        max_pixels: int = 16_000_000,
        keep_s: float = 1800.0,
        abandon_s: float = 30.0,
        root: Path | None = None,
    ) -> None:
        if not models:
            raise UsageError("no models to serve")
        self.models = models
        self.device = device
        # (model, precision, denoise strength or None): built once, shared by jobs
        self.engines: dict[tuple[str, str, float | None], Engine] = {}
        self.max_queue = max_queue
        self.max_pixels = max_pixels
        self.keep_s = keep_s
        self.abandon_s = abandon_s
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        remove_dead_servers(Path(root) if root is not None else Path(tempfile.gettempdir()))
        self.root = Path(tempfile.mkdtemp(prefix="seemore-serve-", dir=root))
        (self.root / "pid").write_text(f"{os.getpid()}\n")  # a later server removes this folder if we die
        self.jobs: dict[str, Job] = {}
        self.waiting: deque[Job] = deque()
        self.running: Job | None = None
        self.lock = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="seemore-serve-worker", daemon=True)
        self.worker.start()

    # ------------------------------------------------------------ the server's side
    def new(self, name: str, settings: Settings) -> Job:
        """A job with its folder, not yet queued (its input is written first)."""
        name = safe_name(name)
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_INPUTS:  # images only: videos are the command line's (seemore upscale)
            known = ", ".join(sorted(s.lstrip(".") for s in IMAGE_INPUTS))
            raise UsageError(f"{name}: not a supported image type (the name should end in one of {known})")
        self.full_check()
        if not self.root.is_dir():  # removed under us (a temp cleaner): recreate, do not fail every upload
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "pid").write_text(f"{os.getpid()}\n")
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
        job = Job(name, folder, settings)
        with self.lock:
            self.jobs[job.id] = job
        return job

    def full_check(self) -> None:
        """Refuse (``Busy``) when ``max_queue`` jobs wait already."""
        with self.lock:
            if len(self.waiting) >= self.max_queue:
                raise Busy(f"the queue is full ({len(self.waiting)} images waiting); try again when some are done")

    def submit(self, job: Job) -> None:
        """Check the uploaded input (size limits, format) and queue it; ``ValueError`` names a bad file."""
        try:
            job.size = probe(job.src, self.max_pixels)
            with self.lock:  # re-entrant: the check and the append are one step
                self.full_check()
                job.state = "queued"
                job.seen = time.monotonic()
                self.waiting.append(job)
                self.lock.notify_all()
        except BaseException:
            self.discard(job)
            raise

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is not None:
            job.seen = time.monotonic()
        return job

    def position(self, job: Job) -> int:
        """1 for the first job waiting, 0 when the job is not waiting."""
        with self.lock:
            try:
                return self.waiting.index(job) + 1
            except ValueError:
                return 0

    def cancel(self, job: Job) -> None:
        """Stop a job: a waiting one leaves the queue, a running one stops at its next tile."""
        job.cancel.set()
        with self.lock:
            if job in self.waiting:
                self.waiting.remove(job)
                self._end(job, "cancelled")

    def discard(self, job: Job) -> None:
        """Forget a job and remove its files (a failed upload, or the user's delete)."""
        self.cancel(job)
        with self.lock:
            if job is not self.running:
                self.jobs.pop(job.id, None)
                shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the worker (after the job that runs, which is cancelled) and remove every file."""
        with self.lock:
            self.closed = True
            for job in [*self.waiting, *([self.running] if self.running else [])]:
                job.cancel.set()
            self.lock.notify_all()
        self.worker.join(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ the worker's side
    def _abandoned(self, job: Job) -> bool:
        return job.cancel.is_set() or (job.watchers == 0 and time.monotonic() - job.seen > self.abandon_s)

    def _end(self, job: Job, state: str, error: str = "") -> None:
        job.state, job.error, job.finished = state, error, time.monotonic()
        if state != "done":
            shutil.rmtree(job.folder, ignore_errors=True)

    def _sweep(self) -> None:
        """Forget jobs finished ``keep_s`` ago, with their files."""
        now = time.monotonic()
        with self.lock:
            for job in [j for j in self.jobs.values() if j.over and now - j.finished > self.keep_s]:
                del self.jobs[job.id]
                shutil.rmtree(job.folder, ignore_errors=True)
            stale = [j for j in self.jobs.values() if j.state == "uploading" and now - j.created > self.keep_s]
            for job in stale:  # an upload that never finished
                del self.jobs[job.id]
                shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self) -> None:
        while True:
            with self.lock:
                if not self.waiting and not self.closed:
                    self.lock.wait(timeout=min(30.0, self.keep_s))
                if self.closed:
                    return
                job = self.running = self.waiting.popleft() if self.waiting else None
            if job is not None:
                self._handle(job)
            self._sweep()

    def _handle(self, job: Job) -> None:
        try:
            if self._abandoned(job):
                raise Cancelled
            self._run(job)
        except Cancelled:
            self._end(job, "cancelled")
        except Exception as e:  # keep serving: the job fails with the reason, the server logs it
            traceback.print_exc(file=sys.stderr)
            self._end(job, "failed", f"internal error: {type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.running = None
                if job.state == "cancelled":
                    self.jobs.pop(job.id, None)

    def _progress(self, job: Job):
        def report(done: int, total: int) -> None:
            job.done_steps, job.total_steps = done, total
            if self._abandoned(job):
                raise Cancelled

        return report

    def engine(self, model: str, precision: str, strength: float | None = None) -> Engine:
        """The engine for ``model`` at ``precision`` (and a denoise ``strength``: the network
        interpolated between the clean and -real weights), built on first use (worker thread only)."""
        key = (model, precision, strength)
        if key not in self.engines:
            net = self.models[model]
            if strength is not None:
                from ..inference.denoise import blended

                net = blended(*(self.models[m] for m in denoise_pair(model, self.models)), strength)
            self.engines[key] = Engine(net, device=self.device, precision=precision)
        return self.engines[key]

    def _run(self, job: Job) -> None:
        s = job.settings
        job.state = "running"
        start = time.perf_counter()
        strength, chosen = s.denoise, ""
        if strength == "auto":
            from ..inference.denoise import estimate

            est = estimate(open_checked(job.src, self.max_pixels))
            strength, chosen = est.strength, est.describe()
        elif strength is not None:
            chosen = f"denoise {strength:.2f}"
        upscaler = Upscaler(self.engine(s.model, s.precision, strength), tile=s.tile, progress=self._progress(job))
        tiled = upscaler.tiled(job.size[1], job.size[0])
        with recorded_routing(upscaler.fast) as routing:  # whole images, tiles
            summary = upscale_files(
                upscaler,
                [job.src],
                job.folder / "out",
                fmt=s.format,
                progress=False,
                log=lambda message: None,
                max_pixels=self.max_pixels,
            )
        if summary.failed:
            self._end(job, "failed", summary.failed[0][1])
            return
        job.result = summary.done[0]
        ranks = expert_ranks_of(upscaler.model)
        precision = "bf16" if upscaler.dtype == torch.bfloat16 else "fp32"
        job.info = {
            "model": s.model,
            "scale": upscaler.scale,
            "out_width": job.size[0] * upscaler.scale,
            "out_height": job.size[1] * upscaler.scale,
            "seconds": round(time.perf_counter() - start, 3),
            "precision": precision,
            "precision_note": (f"{fb.requested} {fb.why}" if (fb := upscaler.engine.fallback) else ""),
            "tile": tiled,
            "denoise": chosen,
            "device": str(upscaler.device),
            "routing": [
                {"group": i + 1, "experts": experts, "ranks": [ranks[e] for e in experts]}
                for i, experts in enumerate(routing[: len(upscaler.model.body)])
            ],
        }
        for which, path in (("input", job.src), ("output", job.result)):
            job.preview[which] = path if path.suffix.lower() in BROWSER_FORMATS else self._png_preview(path)
        bicubic = self._bicubic_preview(job.preview["input"], (job.info["out_width"], job.info["out_height"]))
        if bicubic is not None:
            job.preview["bicubic"] = bicubic
        self._end(job, "done")

    def _bicubic_preview(self, src: Path, size: tuple[int, int]) -> Path | None:
        """The input enlarged to the output's size by MATLAB bicubic (what PSNR tables compare
        against), for the page's "before"; None above 16 M output pixels (the page then shows
        the input's pixels enlarged)."""
        if size[0] * size[1] > BICUBIC_PREVIEW_PIXELS:
            return None
        im = open_checked(src, max_pixels=sys.maxsize)
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        big = imresize(np.asarray(im), size=(size[1], size[0]))
        dst = src.with_name(src.stem + ".bicubic.png")
        Image.fromarray(big).save(dst, format="PNG", compress_level=1)
        return dst

    def _png_preview(self, path: Path) -> Path:
        """An 8-bit PNG of an image browsers do not show (TIFF)."""
        im = open_checked(path, max_pixels=sys.maxsize)  # our own file, already checked
        if im.mode.startswith("I"):  # 16-bit gray
            im = Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8))
        elif im.mode not in ("RGB", "RGBA", "L", "LA"):
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        dst = path.with_name(path.stem + ".preview.png")
        im.save(dst, format="PNG", compress_level=1)
        return dst
