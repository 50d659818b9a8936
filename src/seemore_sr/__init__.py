"""seemore-sr: SeemoRe image super-resolution (Zamir et al., ICML 2024).

Public API::

    create_model(name, **overrides)      # random init, eval mode
    load_model(path_or_name, **overrides)  # checkpoint file or bundled weights, eval mode
    save_model(model, path, **provenance)  # .safetensors with config + provenance
    list_models()

Models take ``(N, C, H, W)`` float tensors in [0, 1] and return ``(N, C, H*s, W*s)``.
"""

from __future__ import annotations

from .inference.fast import optimize
from .models.checkpoint import CheckpointError, save_model
from .models.hub import bundled_weights, load_model
from .models.registry import create_model, list_models
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


def __getattr__(name: str):  # lazy: keeps `import seemore_sr` light
    if name in ("upscale", "Upscaler"):
        from .inference import upscaler

        return getattr(upscaler, name)
    raise AttributeError(name)
