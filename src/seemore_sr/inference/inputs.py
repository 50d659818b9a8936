"""What the inputs are: files, folders and globs to the list of images and videos to upscale.

Torch-free, so that the command line checks its inputs before the heavy imports.
"""

from __future__ import annotations

import glob
from pathlib import Path

from ..data.images import IMAGE_SUFFIXES, regular_file

__all__ = ["IMAGE_INPUTS", "INPUT_SUFFIXES", "VIDEO_SUFFIXES", "collect_inputs"]

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm"}
IMAGE_INPUTS = IMAGE_SUFFIXES | {".gif"}  # GIFs: single frame, written as PNG
INPUT_SUFFIXES = IMAGE_INPUTS | VIDEO_SUFFIXES


def collect_inputs(
    items: list[str], recursive: bool = False, notes: list[str] | None = None
) -> tuple[list[Path], list[tuple[str, str]], dict[Path, Path]]:
    """Files, folders and globs -> ``(image files, [(item, reason)] for items that match
    nothing, {file: its folder relative to the scanned folder})``; the last lets the output
    tree mirror the input tree of a recursive scan. ``notes`` receives what was left out
    without being an error (a folder's subfolders, without ``recursive``).
    """
    notes = [] if notes is None else notes
    files: list[Path] = []
    subdirs: dict[Path, Path] = {}
    missing: list[tuple[str, str]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(q for q in it if q.is_file() and q.suffix.lower() in INPUT_SUFFIXES)
            skipped = 0 if recursive else sum(1 for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
            if skipped:
                notes.append(f"{item}: {skipped} subfolder(s) skipped (use -r to include them)")
            if not found:
                missing.append((item, "folder holds no images" + (" (its subfolders need -r)" if skipped else "")))
            files += found
            subdirs.update({q: q.parent.relative_to(p) for q in found})
        elif p.exists():
            why = regular_file(p)
            if why:
                missing.append((item, why))
            else:
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
    return unique, missing, {f: subdirs[f] for f in unique if f in subdirs}
