"""Models by name or path: the weights bundled in the package, and checkpoint files."""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint
from .registry import WEIGHTS_DIR, bundled_weights, parse_name
from .seemore import SeemoRe

__all__ = ["WEIGHTS_DIR", "bundled_weights", "load_model"]


def load_model(path_or_name: str | os.PathLike, **overrides: object) -> SeemoRe:
    """A model in eval mode from a checkpoint path or a registry name with bundled weights."""
    path = Path(path_or_name)
    if path.exists() or path.suffix in (".pth", ".pt", ".safetensors", ".ckpt", ".bin", ".onnx"):
        return load_checkpoint(path, **overrides)
    name = str(path_or_name)
    parse_name(name)  # unknown names: an error listing the known ones
    shipped = bundled_weights()
    if name not in shipped:
        have = ", ".join(shipped) or "none yet"
        raise CheckpointError(f"{name}: no bundled weights (bundled: {have}); pass a checkpoint path")
    return load_checkpoint(shipped[name], **overrides)
