"""Reading checkpoints from the wild and writing our own safetensors format.

Readable: the authors' BasicSR pickles (``params`` / ``params_ema``), bare state dicts,
``state_dict`` / ``model`` wrappers, ``module.`` prefixes, and ``.safetensors`` files
(ours carry their config as JSON metadata). Pickles are only ever opened with
``torch.load(weights_only=True)``. Every failure is a :class:`CheckpointError` with
one clear message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .._fs import atomic_path
from ..errors import SeemoreError
from .registry import VARIANTS, UnknownFieldError, make_config, variant_of
from .seemore import RANK_GROWTH, SeemoRe, SeemoReConfig, expert_ranks

__all__ = [
    "CheckpointError",
    "read_checkpoint",
    "infer_config",
    "build_from_state_dict",
    "load_checkpoint",
    "save_model",
    "LIMITS",
    "check_limits",
]

FORMAT = "seemore-sr"
_WRAPPERS = ("params_ema", "params", "state_dict", "model", "net", "network")


class CheckpointError(SeemoreError, ValueError):
    """A file that cannot be turned into a SeemoRe model; the message says why."""


def _safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated?): {e}") from None


# What a pickled checkpoint's zip may declare: torch.save stores its tensors uncompressed, and
# the largest network within LIMITS is well under a gigabyte of float32s.
MAX_DECLARED_BYTES = 2 << 30
MAX_COMPRESSED_ENTRY = 16 << 20


def _check_zip(path: Path) -> None:
    """Refuse a zip pickle whose entries would inflate beyond any SeemoRe before reading any:
    a 5.8 MB file whose one storage inflated to 6 GB drove RSS to 6 GB inside torch.load."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # a legacy pickle: torch.load reads it (weights only)
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a checkpoint (a damaged zip: {e})") from None
    total = sum(e.file_size for e in entries)
    if total > MAX_DECLARED_BYTES:
        raise CheckpointError(
            f"{path}: refused: its storages declare {total / 2**30:.1f} GB, more than any SeemoRe "
            f"(at most {MAX_DECLARED_BYTES / 2**30:.0f} GB); nothing was read"
        )
    packed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED and e.file_size > MAX_COMPRESSED_ENTRY]
    if packed:
        e = packed[0]
        raise CheckpointError(
            f"{path}: refused: {e.filename} inflates from {e.compress_size:,} to {e.file_size:,} bytes "
            "(torch.save stores tensors uncompressed: a zip bomb?); nothing was read"
        )


def _pickle(path: Path) -> object:
    _check_zip(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise CheckpointError(
                f"{path}: refused: the pickle needs code execution to load "
                f"(only plain tensors and containers are allowed): {msg}"
            ) from None
        raise CheckpointError(f"{path}: not a checkpoint (unreadable pickle: {msg})") from None
    except Exception as e:  # noqa: BLE001 - torch.load raises anything on garbage input
        raise CheckpointError(f"{path}: not a checkpoint, or a truncated one ({type(e).__name__}: {e})") from None


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Return ``(state_dict, metadata)`` from any supported checkpoint file.

    ``metadata`` holds ``config`` and ``provenance`` dicts when the file has them.
    """
    from ..data.images import regular_file

    path = Path(path)
    why = regular_file(path)
    if why == "no such file":
        raise CheckpointError(f"{path}: no such checkpoint file")
    if why:
        raise CheckpointError(f"{path}: {why}; a checkpoint is a .safetensors / .pth file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    with path.open("rb") as f:
        head = f.read(256)
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head)):
        raise CheckpointError(
            f"{path}: an ONNX model (as `seemore export` writes), not a checkpoint; run it with onnxruntime, "
            "or give the .safetensors / .pth it was exported from"
        )
    meta: dict[str, object] = {}
    if path.suffix == ".safetensors" or (len(head) > 9 and head[8:9] == b"{"):
        tensors, raw = _safetensors(path)
        for key in ("config", "provenance"):
            if key in raw:
                try:
                    meta[key] = json.loads(raw[key])
                except json.JSONDecodeError:
                    raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON") from None
        obj: object = tensors
    else:
        obj = _pickle(path)
    state = _unwrap(obj, path)
    return state, meta


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    for _ in range(3):  # nested wrappers, e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping):
            for key in _WRAPPERS:
                if isinstance(obj.get(key), Mapping):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: not a checkpoint: no state dict found")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: not a checkpoint: holds no tensors")
    for prefix in ("module.", "state_dict.", "_orig_mod."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    # Flattened files (like the golden vectors) keep extra tensors beside the weights.
    if any(k.startswith("state_dict.") for k in tensors) and "conv_1.weight" not in tensors:
        tensors = {k[11:]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    return tensors


def _shape(state: Mapping[str, Tensor], key: str, ndim: int = 4) -> tuple[int, ...]:
    """The shape of a conv weight ``key`` (``ndim`` dimensions), or a CheckpointError naming it."""
    if key not in state:
        raise CheckpointError(f"missing key {key!r}: the tensors fit no SeemoRe network")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{key} has shape {list(shape)}: a conv weight has {ndim} dimensions")
    return shape


def infer_config(state: Mapping[str, Tensor], **overrides: object) -> SeemoReConfig:
    """Read a config off tensor shapes; channel shuffle and recursion come from the presets.

    Shapes reveal embedding dim, layers, experts, rank growth, scale, kernel size and
    channels. ``use_shuffle`` / ``recursive`` are taken from the variant with the same
    layers and width (tiny's values for unknown shapes); ``topk`` and ``img_range``
    default to 1. Any field can be forced with ``overrides``.
    """
    c, in_chans = _shape(state, "conv_1.weight")[:2]
    layers = len({int(m[1]) for k in state if (m := re.match(r"body\.(\d+)\.", k))})
    if layers == 0:
        raise CheckpointError("no residual groups (body.*) found: not a SeemoRe state dict")
    prefix = "body.0.local_block.block.moe_layer.experts"
    experts = len({int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"\.(\d+)\.", k))})
    ranks = [_shape(state, f"{prefix}.{j}.conv_1.weight")[0] for j in range(experts)]
    lr_space = next((n for n in RANK_GROWTH if expert_ranks(n, experts) == ranks), None)
    if lr_space is None:
        raise CheckpointError(f"expert ranks {ranks} fit no rank growth ({', '.join(RANK_GROWTH)})")
    up = _shape(state, "upsampler.0.weight")[0]
    scale = math.isqrt(up // in_chans) if up % in_chans == 0 else 0
    if scale * scale * in_chans != up:
        raise CheckpointError(f"upsampler has {up} channels: no integer scale for {in_chans} channels")
    kernel = _shape(state, "body.0.global_block.block.attn.conv.0.weight")[-1]
    preset = VARIANTS[variant_of(layers, c) or "tiny"]
    fields = dict(
        scale=scale,
        in_chans=in_chans,
        num_experts=experts,
        num_layers=layers,
        embedding_dim=c,
        global_kernel_size=kernel,
        lr_space=lr_space,
        use_shuffle=preset["use_shuffle"],
        recursive=preset["recursive"],
    )
    return _config(fields, overrides)


def _config(fields: Mapping[str, object], overrides: Mapping[str, object]) -> SeemoReConfig:
    try:  # unknown override names stay an UnknownFieldError: the caller's mistake, not the file's
        return make_config(fields, overrides)
    except UnknownFieldError:
        raise
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def _few(keys: list[str], n: int = 4) -> str:
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# What a checkpoint may ask for: well above every released variant (48 channels, 16 layers,
# 3 experts, kernel 11, recursion 2), well below what would cost gigabytes or minutes. Files
# come from strangers; nothing is built or allocated before these and the tensors agree.
LIMITS = {"embedding_dim": 512, "num_layers": 64, "num_experts": 16, "global_kernel_size": 63, "recursive": 4,
          "in_chans": 4}  # fmt: skip


def check_limits(config: SeemoReConfig) -> None:
    for name, most in LIMITS.items():
        if getattr(config, name) > most:
            raise CheckpointError(
                f"config asks for {name}={getattr(config, name)}, beyond any SeemoRe (at most {most}); not built"
            )


def build_from_state_dict(state: Mapping[str, Tensor], config: SeemoReConfig) -> SeemoRe:
    """Build a model of ``config`` and load ``state`` strictly, with readable errors.

    The config is checked against :data:`LIMITS` and against the tensors present (names,
    shapes, parameter count, finite floating-point values) on the meta device, which
    allocates nothing, before the real model is built.
    """
    check_limits(config)
    with torch.device("meta"):
        own = SeemoRe(config).state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        raise CheckpointError("state dict does not match the SeemoRe config: " + "; ".join(parts))
    bad = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        implied, held = sum(v.numel() for v in own.values()), sum(state[k].numel() for k in own)
        raise CheckpointError(
            f"tensor shapes fit no SeemoRe of this config ({implied:,} parameters implied, {held:,} in the file): "
            + _few(bad, 3)
        )
    wrong = [f"{k} ({v.dtype})" for k, v in state.items() if not v.is_floating_point()]
    if wrong:
        raise CheckpointError(f"weights must be floating point: {_few(wrong)}")
    broken = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"non-finite weights (NaN or inf) in {_few(broken)}: the file is damaged")
    model = SeemoRe(config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def load_checkpoint(path: str | os.PathLike, **overrides: object) -> SeemoRe:
    """A model from any readable checkpoint file, in eval mode.

    The file's own config is used when it has one, shapes are read otherwise;
    ``overrides`` replace config fields either way.
    """
    state, meta = read_checkpoint(path)
    try:
        if isinstance(meta.get("config"), Mapping):
            config = _config(meta["config"], overrides)  # type: ignore[arg-type]
        else:
            config = infer_config(state, **overrides)
        model = build_from_state_dict(state, config)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model.provenance = dict(meta.get("provenance") or {})  # type: ignore[assignment]
    return model


def save_model(model: SeemoRe, path: str | os.PathLike, **provenance: object) -> Path:
    """Write ``model`` as ``.safetensors`` with its config and provenance as metadata.

    Tensor names stay the authors' names. The file is written atomically.
    """
    model = getattr(model, "_orig_mod", model)
    config = getattr(model, "config", None)
    if not isinstance(config, SeemoReConfig):
        raise TypeError("save_model expects a SeemoRe model (with a .config)")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: our format is .safetensors")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(dataclasses.asdict(config)),
        "provenance": json.dumps(provenance, default=str),
    }
    try:
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=metadata)
    except SafetensorError as e:  # a full disk surfaces as safetensors' own error, not an OSError
        raise OSError(f"{path}: cannot write ({e}); nothing was written") from None
    return path
