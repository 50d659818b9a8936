"""Named SeemoRe variants: a small table of data and one builder."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import SeemoreError, UsageError
from .seemore import SeemoRe, SeemoReConfig

__all__ = [
    "VARIANTS",
    "SCALES",
    "UnknownFieldError",
    "list_models",
    "config_for",
    "make_config",
    "parse_name",
    "clean_name",
    "bundled_weights",
    "WEIGHTS_DIR",
    "FLAVOURS",
    "create_model",
    "variant_of",
]

# The released variants (all: 3 experts, exp rank growth, top-1, kernel 11).
VARIANTS: dict[str, dict[str, object]] = {
    "tiny": dict(num_layers=6, embedding_dim=36, use_shuffle=True, recursive=2),
    "base": dict(num_layers=8, embedding_dim=48, use_shuffle=True, recursive=2),
    "large": dict(num_layers=16, embedding_dim=48, use_shuffle=False, recursive=1),
}
SCALES = (1, 2, 3, 4)
FLAVOURS = ("", "-real")  # clean bicubic weights; weights for real photos (JPEG, noise, blur), same network
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # the bundled weights, named by registry name
_NAME = re.compile(r"^seemore-(?P<variant>[a-z]+)-x(?P<scale>\d+)(?P<flavour>-real)?$")


def bundled_weights() -> dict[str, Path]:
    """Registry names that ship with trained weights, and their files."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def list_models() -> list[str]:
    """All registered names, e.g. ``seemore-tiny-x4`` and ``seemore-tiny-x4-real`` (the same
    network; which have bundled weights: :func:`~seemore_sr.models.hub.bundled_weights`)."""
    return [f"seemore-{v}-x{s}{f}" for f in FLAVOURS for v in VARIANTS for s in SCALES]


def parse_name(name: str) -> tuple[str, int]:
    """``(variant, scale)`` of a registered name; an unknown name is an error that says which
    names have bundled weights."""
    m = _NAME.match(name)
    if not m or m["variant"] not in VARIANTS or int(m["scale"]) not in SCALES:
        have = ", ".join(bundled_weights()) or "none"
        raise UsageError(
            f"unknown model {name!r}: names are seemore-{{{'|'.join(VARIANTS)}}}-x{{{'|'.join(map(str, SCALES))}}}"
            f" with an optional -real; with bundled weights: {have}"
        )
    return m["variant"], int(m["scale"])


def clean_name(name: str) -> str:
    """The clean-weights name of a registered name (``seemore-tiny-x4-real`` -> ``seemore-tiny-x4``)."""
    return name.removesuffix("-real")


class UnknownFieldError(SeemoreError, TypeError, ValueError):
    """An override names no config field: a TypeError to Python callers (like any unknown
    keyword), a ValueError to the CLI, which reports bad arguments in one line."""


def variant_of(num_layers: int, embedding_dim: int) -> str | None:
    """The released variant with these layers and width (``tiny``, ``base``, ``large``), or None."""
    return next(
        (v for v, p in VARIANTS.items() if (p["num_layers"], p["embedding_dim"]) == (num_layers, embedding_dim)), None
    )


def make_config(fields: Mapping[str, object], overrides: Mapping[str, object]) -> SeemoReConfig:
    """``SeemoReConfig`` from ``fields`` updated by ``overrides``; unknown override names are errors."""
    known = {f.name for f in dataclasses.fields(SeemoReConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UnknownFieldError(f"unknown config field(s) {unknown}; fields are {sorted(known)}")
    merged = {k: v for k, v in {**fields, **overrides}.items() if k in known}
    return SeemoReConfig(**merged)  # type: ignore[arg-type]


def config_for(name: str, **overrides: object) -> SeemoReConfig:
    """The config of a registered name, with fields replaced by ``overrides``."""
    variant, scale = parse_name(name)
    return make_config({"scale": scale, **VARIANTS[variant]}, overrides)


def create_model(name: str, **overrides: object) -> SeemoRe:
    """A randomly initialised model of a registered variant, in eval mode."""
    return SeemoRe(config_for(name, **overrides)).eval()
