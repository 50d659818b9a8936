"""Atomic file writes: a temporary file beside the target, renamed over it when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove_stale_parts", "cache_dir", "release_free_memory"]


def cache_dir() -> Path:
    """Where caches live (exported graphs, executor choices, decoded training images):
    ``$SEEMORE_CACHE``, else ``$XDG_CACHE_HOME/seemore-sr``, else ``~/.cache/seemore-sr``."""
    if os.environ.get("SEEMORE_CACHE"):
        return Path(os.environ["SEEMORE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seemore-sr"


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``), so a burst of
    temporary buffers (decoding and resizing a folder of photos) does not stay in the RSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


@contextmanager
def atomic_path(dst: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; when the block succeeds, the file is
    fsynced, given the usual mode (umask) and moved onto ``dst``; otherwise removed.
    A reader never sees a half-written ``dst``, and an old ``dst`` survives a crash.

    ``replace=False`` never replaces an existing ``dst``: the move is a hard link, which
    fails atomically with ``FileExistsError`` when ``dst`` appeared meanwhile (another
    process writing the same output). The temporary name carries the writer's PID, so
    :func:`remove_stale_parts` can tell a dead run's leftovers from a live run's file.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.{os.getpid()}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600
        if replace:
            os.replace(tmp, dst)
        else:
            try:
                os.link(tmp, dst)
            except OSError as e:
                if isinstance(e, FileExistsError):
                    raise
                if dst.exists():  # a filesystem without hard links: fall back to check-then-rename
                    raise FileExistsError(f"{dst}: exists") from None
                os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary ``.NAME.PID.*.part`` files of runs that no longer exist."""
    removed = []
    for part in Path(folder).glob(".*.part"):
        bits = part.name.split(".")
        pid = next((int(b) for b in reversed(bits[:-2]) if b.isdigit()), None)
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive: another run is writing it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        part.unlink(missing_ok=True)
        removed.append(part)
    return removed
