"""Typed training configs: small YAML files validated once, CLI ``--set`` overrides.

A recipe file has three sections, each a dataclass below; unknown keys and values of
the wrong type are errors that name the key. The scale is a field, not a new file.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.degrade_config import DegradeConfig
from ..errors import SeemoreError

TEACHERS = ("dat-light",)  # train.teacher's choices (training/teacher.py)
PIXEL_LOSSES = ("l1", "l2")  # train.pixel_loss's choices (trainer.sr_loss)

__all__ = ["ConfigError", "ModelSection", "DataSection", "TrainSection", "TrainConfig", "load_config", "RECIPES"]

RECIPES = Path(__file__).parent / "recipes"


class ConfigError(SeemoreError, ValueError):
    """A training config that cannot be used. ``key`` is the config key at fault
    (``section.key``; None when the override itself is malformed), and the message says why;
    ``suggest`` is a ``section.key=value`` assignment that would fix it, where one does."""

    def __init__(self, message: str, key: str | None = None, suggest: str | None = None) -> None:
        self.key, self.suggest = key, suggest
        super().__init__(message)


@dataclass(frozen=True)
class ModelSection:
    variant: str = "tiny"  # tiny | base | large
    scale: int = 2
    init_from: str | None = None  # checkpoint to fine-tune from (upsampler skipped when scales differ)


@dataclass(frozen=True)
class DataSection:
    train: list[str] = field(
        default_factory=lambda: ["../shared/data/train"]
    )  # HR folders (or HR/ + LR_bicubic/ pairs)
    val: str | None = "../shared/data/benchmark/Set5"  # validation set (HR/ + optional LR_bicubic/)
    patch_size: int = 64  # LR patch side
    skip_small: bool = False  # skip (not fail on) images smaller than the patch
    synthetic: float = 0.0  # fraction of patches replaced by flat colours and shapes (data/synthetic.py)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)  # random LR degradations (data/degrade.py)


@dataclass(frozen=True)
class TrainSection:
    iterations: int = 500_000
    batch_size: int = 32  # global batch, split across ranks
    micro_batch: int = 0  # images per forward/backward, gradients accumulated (memory); 0 = a rank's whole slice
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    schedule: str = "multistep"  # multistep (the paper's) | wsd (warmup-stable-decay, extendable)
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95])  # multistep: fractions
    gamma: float = 0.5  # multistep: factor at each milestone
    warmup: int = 0  # iterations of linear warmup from lr / warmup (both schedules)
    decay: int = 0  # wsd: the last `decay` iterations anneal linearly to 0; 0 = constant (a trunk)
    branch_from: str | None = None  # a run's state.pt to continue from (weights, optimizer, EMA, iteration)
    pixel_loss: str = "l1"  # l1 (the paper's) | l2 (mean squared error, the measure PSNR is made of)
    fft_weight: float = 0.1
    balance: float = 0.0  # load-balancing term on the routers (Switch Transformer's E * sum f_j P_j); 0: off
    teacher: str = ""  # "" or dat-light: distillation from its cached outputs (training/teacher.py)
    teacher_weight: float = 0.5  # the L1 to the teacher's output, beside the loss to HR
    ema_decay: float = 0.0  # 0 disables EMA
    seed: int = 0
    val_every: int = 5000
    ckpt_every: int = 1000
    log_every: int = 100
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    channels_last: bool = False
    threads: int = 0  # torch intra-op threads; 0 = torch's default


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(value: object, tp: object, key: str) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, tp):  # type: ignore[arg-type]
        raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    return value


def _build(cls: type, raw: object, prefix: str) -> object:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; known: {sorted(names)}")
    kwargs = {}
    for k, v in raw.items():
        tp = hints[k]
        kwargs[k] = _build(tp, v, f"{prefix}.{k}") if dataclasses.is_dataclass(tp) else _check(v, tp, f"{prefix}.{k}")
    return cls(**kwargs)


def _validate(cfg: TrainConfig) -> None:
    from ..models.registry import SCALES, VARIANTS

    if cfg.model.variant not in VARIANTS:
        raise ConfigError(f"model.variant: {cfg.model.variant!r} is not one of {sorted(VARIANTS)}")
    if cfg.model.scale not in SCALES:
        raise ConfigError(f"model.scale: must be one of {SCALES}, got {cfg.model.scale}")
    t = cfg.train
    for key in ("iterations", "batch_size", "val_every", "ckpt_every", "log_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}: must be positive, got {getattr(t, key)}")
    for key, ok, rule in (
        ("lr", t.lr > 0, "> 0"),
        ("gamma", t.gamma > 0, "> 0"),
        ("fft_weight", t.fft_weight >= 0, ">= 0"),
        ("teacher_weight", t.teacher_weight >= 0, ">= 0"),
        ("balance", t.balance >= 0, ">= 0"),
        ("threads", t.threads >= 0, ">= 0 (0 = torch's default)"),
        ("seed", t.seed >= 0, ">= 0"),
        ("weight_decay", t.weight_decay >= 0, ">= 0"),
    ):
        if not ok:
            raise ConfigError(f"train.{key}: must be {rule}, got {getattr(t, key)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if t.threads > cores:
        raise ConfigError(f"train.threads: at most the {cores} cores this process may use, got {t.threads}")
    if not cfg.data.train:
        raise ConfigError("data.train: at least one folder of training images is needed")
    if t.schedule not in ("multistep", "wsd"):
        raise ConfigError(f"train.schedule: must be multistep or wsd, got {t.schedule!r}")
    if t.micro_batch < 0 or (t.micro_batch and t.batch_size % t.micro_batch):
        raise ConfigError(
            f"train.micro_batch: must divide train.batch_size ({t.batch_size}), got {t.micro_batch}",
            key="train.micro_batch",
        )
    if t.warmup < 0 or t.decay < 0:
        raise ConfigError(f"train.warmup / train.decay: must be >= 0, got {t.warmup} / {t.decay}")
    if t.warmup + t.decay > t.iterations:
        raise ConfigError(f"train.warmup + train.decay ({t.warmup} + {t.decay}) exceed train.iterations")
    if t.pixel_loss not in PIXEL_LOSSES:
        raise ConfigError(f"train.pixel_loss: must be one of {', '.join(PIXEL_LOSSES)}, got {t.pixel_loss!r}")
    if t.precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision: must be fp32 or bf16, got {t.precision!r}")
    if t.teacher and t.teacher not in TEACHERS:
        raise ConfigError(f"train.teacher: empty or {' / '.join(TEACHERS)}, got {t.teacher!r}")
    if not all(0 < m <= 1 for m in t.milestones):
        raise ConfigError(f"train.milestones: fractions in (0, 1], got {t.milestones}")
    if len(t.betas) != 2:
        raise ConfigError(f"train.betas: two values, got {t.betas}")
    if not 0 <= cfg.data.synthetic < 1:
        raise ConfigError(f"data.synthetic: a fraction from 0 to below 1, got {cfg.data.synthetic}")
    if cfg.data.patch_size < 4**2:
        raise ConfigError(f"data.patch_size: at least 16 (the network's minimum), got {cfg.data.patch_size}")
    if (problem := cfg.data.degrade.validate()) is not None:
        raise ConfigError(problem, key="data.degrade")
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: in [0, 1), got {t.ema_decay}")


def _set(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected section.key=value")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2:
        raise ConfigError(f"override {assignment!r}: expected section.key=value (e.g. train.batch_size=16)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node = raw
    for depth, part in enumerate(parts[:-1]):  # data.degrade.jpeg=0.5: a key of a nested section
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {assignment!r}: {where} is not a section", key=where)
    node[parts[-1]] = value


def load_config(recipe: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Load a recipe (a path, or the name of a bundled one such as ``cpu``) and apply ``--set`` overrides."""
    raw: dict = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.exists() and (RECIPES / f"{recipe}.yaml").exists():
            path = RECIPES / f"{recipe}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in RECIPES.glob("*.yaml"))
            raise ConfigError(f"recipe {recipe!r}: no such file, and not a bundled recipe ({', '.join(known)})")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    for assignment in overrides:
        _set(raw, assignment)
    cfg = _build(TrainConfig, raw, "config")
    assert isinstance(cfg, TrainConfig)
    _validate(cfg)
    return cfg
