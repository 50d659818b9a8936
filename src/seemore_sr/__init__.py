"""seemore-sr: SeemoRe image super-resolution (Zamir et al., ICML 2024).

Public API::

    create_model(name, **overrides)      # random init, eval mode
    load_model(path_or_name, **overrides)  # checkpoint file or bundled weights, eval mode
    save_model(model, path, **provenance)  # .safetensors with config + provenance
    list_models()
    optimize(model)                      # the fastest exact inference module here
    fold(model)                          # the network's inference form (folded weights)
    Upscaler(model, ...)(image), upscale(image)

Models take ``(N, C, H, W)`` float tensors in [0, 1] and return ``(N, C, H*s, W*s)``.
Names are imported on first use, so ``import seemore_sr`` (and ``seemore --help``) does
not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "CheckpointError": ".models.checkpoint",
    "save_model": ".models.checkpoint",
    "bundled_weights": ".models.hub",
    "load_model": ".models.hub",
    "create_model": ".models.registry",
    "list_models": ".models.registry",
    "SeemoRe": ".models.seemore",
    "SeemoReConfig": ".models.seemore",
    "optimize": ".inference.fast",
    "fold": ".models.folded",
    "upscale": ".inference.upscaler",
    "Upscaler": ".inference.upscaler",
    "Engine": ".inference.engine",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seemore_sr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
