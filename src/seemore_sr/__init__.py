"""seemore-sr: SeemoRe image super-resolution (Zamir et al., ICML 2024).

Public API::

    create_model(name, **overrides)      # random init, eval mode
    load_model(path_or_name, **overrides)  # checkpoint file or bundled weights, eval mode
    save_model(model, path, **provenance)  # .safetensors with config + provenance
    list_models()

Models take ``(N, C, H, W)`` float tensors in [0, 1] and return ``(N, C, H*s, W*s)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .inference.fast import optimize
from .models.checkpoint import CheckpointError, load_checkpoint, save_model
from .models.registry import create_model, list_models, parse_name
from .models.seemore import SeemoRe, SeemoReConfig

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "SeemoRe",
    "SeemoReConfig",
    "bundled_weights",
    "create_model",
    "list_models",
    "load_model",
    "optimize",
    "save_model",
    "upscale",
    "Upscaler",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"


def bundled_weights() -> dict[str, Path]:
    """Registry names that ship with trained weights, and their files."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def load_model(path_or_name: str | os.PathLike, **overrides: object) -> SeemoRe:
    """A model in eval mode from a checkpoint path or a registry name with bundled weights."""
    path = Path(path_or_name)
    if path.exists() or path.suffix in (".pth", ".pt", ".safetensors", ".ckpt", ".bin"):
        return load_checkpoint(path, **overrides)
    name = str(path_or_name)
    parse_name(name)  # unknown names: an error listing the known ones
    shipped = bundled_weights()
    if name not in shipped:
        have = ", ".join(shipped) or "none yet"
        raise CheckpointError(f"{name}: no bundled weights (bundled: {have}); pass a checkpoint path")
    return load_checkpoint(shipped[name], **overrides)


def __getattr__(name: str):  # lazy: keeps `import seemore_sr` light
    if name in ("upscale", "Upscaler"):
        from .inference import upscaler

        return getattr(upscaler, name)
    raise AttributeError(name)
