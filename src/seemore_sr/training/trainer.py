"""``seemore train``: the paper's recipe, resumable, data-parallel.

The loop (``_train``) reads top to bottom: set up processes, model and data
(``_setup``), restore the latest state if any (``_restore``), then step / log
(``_RunLog``) / validate / checkpoint (``_Checkpoint``). Run directory layout::

    run/
      config.yaml        the resolved config
      state.pt           latest full training state (weights_only-loadable)
      latest.safetensors latest weights (our format, with config + provenance)
      best.safetensors   best Set5 PSNR so far
      metrics.jsonl      one JSON object per log / validation event
      curves.png         loss and validation PSNR

Distributed: launched by ``torchrun``, each rank takes its slice of every global batch;
gradients are averaged by DistributedDataParallel; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from .._fs import atomic_path
from ..data.paired import PairedImages, find_pairs, load_pair
from ..evaluation.metrics import psnr_torch, ssim_torch
from ..models.checkpoint import CheckpointError, read_checkpoint, save_model
from ..models.registry import config_for
from ..models.seemore import Router, SeemoRe
from .config import ConfigError, TrainConfig, TrainSection

__all__ = ["train", "sr_loss", "lr_at", "schedule_lr", "TrainingError"]


class TrainingError(ConfigError):
    """A run that cannot start or go on; ``key`` / ``suggest`` as for :class:`ConfigError`."""


_PIXEL_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}  # config.PIXEL_LOSSES's names


def sr_loss(sr: Tensor, hr: Tensor, fft_weight: float = 0.1, pixel_loss: str = "l1") -> Tensor:
    """L1 (or, ``pixel_loss="l2"``, the mean squared error) in pixels + ``fft_weight`` x L1
    between real/imag parts of ``rfft2``."""
    pixel = _PIXEL_LOSSES[pixel_loss](sr, hr)
    if fft_weight == 0:
        return pixel
    a = torch.fft.rfft2(sr.float())
    b = torch.fft.rfft2(hr.float())
    freq = F.l1_loss(torch.view_as_real(a), torch.view_as_real(b))
    return pixel + fft_weight * freq


def balance_loss(logits: list[Tensor]) -> Tensor:
    """The routers' load-balancing term (Switch Transformer's, after Shazeer et al. 2017, whom
    the paper follows for MoRE): ``E * sum_j f_j P_j`` per layer, averaged over the layers;
    ``f_j`` the share of images routed to expert j (top-1, no gradient), ``P_j`` the mean
    router probability of j. It is 1 when both are uniform and grows towards E as one
    expert takes every image: its gradient lowers the probability of the experts in use."""
    terms = []
    for lg in logits:
        probs = F.softmax(lg.float(), dim=1)
        e = probs.shape[1]
        f = F.one_hot(probs.argmax(1), e).float().mean(0)
        terms.append(e * (f * probs.mean(0)).sum())
    return torch.stack(terms).mean()


def lr_at(it: int, base: float, total: int, milestones: list[float], gamma: float) -> float:
    """MultiStepLR as a pure function: ``base * gamma ** (milestones passed)``."""
    passed = sum(it >= round(m * total) for m in milestones)
    return base * gamma**passed


def schedule_lr(it: int, t: TrainSection) -> float:
    """The learning rate at iteration ``it`` (0-based) of the configured schedule.

    ``multistep``: the paper's MultiStepLR over ``t.iterations``. ``wsd``
    (warmup-stable-decay): ``t.lr`` from the end of the warmup until the last ``t.decay``
    iterations, which anneal linearly towards 0. With ``decay = 0`` the rate is constant,
    so a run can be extended by raising ``iterations``; a cool-down branch is a run that
    continues the trunk's state (``branch_from``) with ``decay`` > 0.
    """
    warm = min(1.0, (it + 1) / t.warmup) if t.warmup else 1.0
    if t.schedule == "multistep":
        return warm * lr_at(it, t.lr, t.iterations, t.milestones, t.gamma)
    left = t.iterations - it
    return warm * t.lr * (min(1.0, left / t.decay) if t.decay else 1.0)


def _what_changed(state: dict, cfg: TrainConfig, data: PairedImages) -> list[str]:
    """What a resumed or branched run may not change: the network and the training images.

    Everything else may differ: the schedule and the rest of ``train``, the patch size, the
    validation set, and where the images lie (a GPU machine reads a copy elsewhere), since
    the images are identified by their count and pixels, not by their folder.
    """
    old = state["config"]
    changed = [f"model.{k}" for k in ("variant", "scale") if old["model"].get(k) != getattr(cfg.model, k)]
    known = {data.fingerprint, data.fingerprint_at(old["data"].get("patch_size", 0))}  # the latter: older states
    if state.get("data", data.fingerprint) not in known:
        changed.append(f"data.train ({state['data']} before, {data.fingerprint} now)")
    return changed


def _load_state(path: Path) -> dict:
    """A ``state.pt`` as a dict of tensors and plain values; one-line errors for bad files."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, empty, foreign: all reported the same way
        raise TrainingError(f"{path}: not a readable training state ({type(e).__name__}: {e})") from None
    need = {"iteration", "model", "optimizer", "ema", "config"}
    if not isinstance(state, dict) or not need <= set(state):
        raise TrainingError(f"{path}: not a seemore training state (needs {sorted(need)})")
    return state


def _atomic_torch_save(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _init_from(model: SeemoRe, path: str) -> list[str]:
    """Load another checkpoint's weights; the upsampler is skipped when its shape differs."""
    try:
        state, _ = read_checkpoint(path)
    except CheckpointError as e:
        raise TrainingError(f"model.init_from: {e}") from None
    own = model.state_dict()
    skipped = [k for k in own if k in state and state[k].shape != own[k].shape and k.startswith("upsampler.")]
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape and k not in skipped]
    if missing or wrong:
        bad = (missing + wrong)[:4]
        raise TrainingError(
            f"model.init_from: {path} is another variant ({len(missing)} missing, {len(wrong)} mismatched "
            f"tensors, e.g. {', '.join(bad)}); only the upsampler may differ"
        )
    model.load_state_dict({k: (own[k] if k in skipped else state[k]) for k in own})
    return skipped


def _val_set(folder: str, scale: int) -> list[tuple[Tensor, Tensor]]:
    out = []
    for hr_path, lr_path in find_pairs(Path(folder), scale, recursive=False):
        pair = load_pair(hr_path, lr_path, scale)
        t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
        out.append((t(pair.lr), t(pair.hr)))
    return out


@torch.no_grad()
def validate(model: nn.Module, pairs: list[tuple[Tensor, Tensor]], scale: int) -> dict[str, float]:
    """PSNR / SSIM (Y channel, ``scale`` pixels cropped) of ``model`` itself, the module being
    trained (or its EMA), in eval mode; its mode is restored afterwards."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ps, ss = [], []
    for low, hr in pairs:
        sr = model(low.to(device)).float().clamp(0, 1).cpu()
        ps.append(psnr_torch(sr, hr, scale).item())
        ss.append(ssim_torch(sr, hr, scale).item())
    model.train(was_training)
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ProcessGroup:
    """torchrun's process group for a ``with`` block, opened here unless the caller opened one
    (then it is theirs to close). Leaving the block frees what still uses the group before
    destroying it (the DDP wrapper can outlive the run in a reference cycle on rank 0), so
    the group is not torn down at interpreter exit with gloo's threads still running: that
    aborted a rank now and then (SIGABRT, "terminate called without an active exception")
    after a run had finished and saved."""

    def __init__(self) -> None:
        self.owned = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
        if self.owned:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    def __enter__(self) -> _ProcessGroup:
        return self

    def __exit__(self, failure: type[BaseException] | None, *_: object) -> None:
        if not self.owned:
            return
        gc.collect()
        if failure is None:  # every rank finished: wait for them (after a failure others may never come)
            dist.barrier()
        dist.destroy_process_group()


def _ranks_reduce(value: float, op: str = "sum") -> float:
    """``value`` summed over torchrun's ranks (``op="max"``: the largest of them), ``value``
    itself in a single process. A collective: every rank calls it at the same step."""
    if _rank()[1] == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(total.item())


def plot_curves(run: Path) -> Path | None:
    """Loss and validation PSNR curves from ``metrics.jsonl`` to ``curves.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    loss = [(r["iter"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["iter"], r["val_psnr"]) for r in rows if "val_psnr" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    if loss:
        a.plot(*zip(*loss, strict=False), marker="o" if len(loss) < 20 else None)
        a.set_yscale("log")
    a.set(title="training loss", xlabel="iteration")
    if val:
        b.plot(*zip(*val, strict=False), marker="o")
    b.set(title="validation PSNR (Y, dB)", xlabel="iteration")
    fig.tight_layout()
    out = run / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


class _Stop:
    """Whether the run should stop cleanly now: a SIGTERM arrived or the time limit passed.

    Under torchrun the agent forwards its SIGTERM to every rank, and each rank keeps its own
    clock; the ranks agree at every step (one all-reduce of the reason), so all of them stop
    after the same step and rank 0 saves it. The handler is set only on the main thread;
    ``restore`` puts the previous one back. The time limit counts from ``start()``, the first
    training step. ``why``: "SIGTERM" or "time limit" once stopping.
    """

    REASONS = ("", "time limit", "SIGTERM")  # all-reduced as their index: a SIGTERM anywhere wins

    def __init__(self, time_limit: float | None) -> None:
        self.signalled, self.deadline, self.time_limit = False, math.inf, time_limit
        self.why = ""
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_: object) -> None:
        self.signalled = True

    def start(self) -> None:
        if self.time_limit is not None:
            self.deadline = time.perf_counter() + self.time_limit

    def __call__(self) -> bool:
        """A collective under torchrun: every rank calls it once per step."""
        local = 2 if self.signalled else 1 if time.perf_counter() > self.deadline else 0
        self.why = self.REASONS[int(_ranks_reduce(local, op="max"))]
        return bool(self.why)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit: float | None = None,
) -> dict:
    """Train (or resume) in ``run_dir``: ``{"iteration", "best_psnr", "best_iter", "model"}``,
    the last being the trained module (this rank's). ``stop_after`` ends early at that iteration.

    A SIGTERM, or ``time_limit`` seconds of training (counted from the first step, so
    loading and validation before it are not charged), stops the run cleanly: the
    iteration in flight finishes, the state is saved, and rerunning resumes from there.
    """
    with _ProcessGroup():
        stop = _Stop(time_limit)
        try:
            return _train(cfg, Path(run_dir), progress, stop_after, stop)
        finally:
            stop.restore()


def _check_data_paths(cfg: TrainConfig) -> None:
    """Missing data folders, with what to pass: the recipes' defaults are the repository's
    layout (``../shared/data`` beside the checkout), which an installed package lacks."""
    for folder in cfg.data.train:
        if not Path(folder).is_dir():
            raise TrainingError(
                f"data.train: {folder}: no such folder (the recipes' default is the repository's layout, "
                "../shared/data beside the checkout); set it to the folders of your HR images",
                key="data.train",
                suggest="data.train=[FOLDER, ...]",
            )
    if cfg.data.val and not Path(cfg.data.val).is_dir():
        raise TrainingError(
            f"data.val: {cfg.data.val}: no such folder; set it to a folder (HR/ and optional "
            "LR_bicubic/X{s}/, as the benchmarks are laid out), or to null to train without validation",
            key="data.val",
            suggest="data.val=FOLDER",
        )


@dataclass
class _Setup:
    """Everything the loop needs, built (and checked) before the first step."""

    cfg: TrainConfig
    run: Path
    rank: int
    world: int
    device: torch.device
    per_rank: int
    model: SeemoRe  # the module being trained (DDP wraps it as ``net``)
    net: nn.Module
    ema: SeemoRe | None
    opt: torch.optim.Optimizer
    data: PairedImages
    val: list[tuple[Tensor, Tensor]]
    skipped: list[str]  # init_from: parameters left at their initial values (another scale's upsampler)
    gates: list[Tensor] = field(default_factory=list)  # train.balance: the routers' logits of the forward in flight

    @property
    def weights(self) -> SeemoRe:
        """What is validated and saved as the run's weights: the EMA when there is one."""
        return self.ema if self.ema is not None else self.model


def _setup(cfg: TrainConfig, run: Path, progress: bool = False) -> _Setup:
    """Device, model, optimizer, EMA and data for this rank (the process group is open)."""
    rank, world = _rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its kernels once
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.batch_size % world:
        raise ConfigError(f"train.batch_size {t.batch_size} does not split across {world} ranks")
    _check_data_paths(cfg)
    mcfg = config_for(f"seemore-{cfg.model.variant}-x{cfg.model.scale}")
    torch.manual_seed(t.seed)
    model = SeemoRe(mcfg)
    skipped = _init_from(model, cfg.model.init_from) if cfg.model.init_from else []
    data = PairedImages(
        cfg.data.train,
        mcfg.scale,
        cfg.data.patch_size,
        t.seed,
        cfg.data.skip_small,
        progress=progress and rank == 0,
        synthetic=cfg.data.synthetic,
        degrade=cfg.data.degrade,
    )
    if t.teacher:
        from .teacher import TeacherError, load_teacher, teacher_outputs

        try:
            teacher = load_teacher(t.teacher, mcfg.scale)
        except TeacherError as e:
            raise TrainingError(str(e)) from None
        data.teach = teacher_outputs(teacher, [pair.lr for pair in data.pairs], mcfg.scale, progress=progress)
        del teacher
    val = _val_set(cfg.data.val, mcfg.scale) if cfg.data.val else []
    model.to(device)
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    ema = None
    if t.ema_decay:
        ema = SeemoRe(mcfg).to(device)
        ema.load_state_dict(model.state_dict())
        ema.requires_grad_(False)
    net: nn.Module = model
    if world > 1:
        # Ranks route to different experts, so some parameters go unused on some ranks. The
        # one buffer is the constant RGB mean: nothing to broadcast before every forward (and
        # for a channels_last model the broadcast failed: "some elements of the input tensor
        # and the written-to tensor refer to a single memory location"). Newer torch names
        # the switch forward_sync_buffers and deprecates broadcast_buffers.
        ddp = nn.parallel.DistributedDataParallel
        buffer_sync = (
            "forward_sync_buffers"
            if "forward_sync_buffers" in inspect.signature(ddp).parameters
            else "broadcast_buffers"
        )
        net = ddp(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
            **{buffer_sync: False},
        )
    s = _Setup(cfg, run, rank, world, device, t.batch_size // world, model, net, ema, opt, data, val, skipped)
    if t.balance:
        for m in model.modules():
            if isinstance(m, Router):
                m.register_forward_hook(lambda _m, _i, out: s.gates.append(out) if _m.training else None)
    return s


@dataclass
class _Progress:
    """Where the run stands: the iteration reached and the best validation so far."""

    iteration: int = 0
    best: float = -math.inf
    best_iter: int | None = None
    notes: list[str] = field(default_factory=list)  # what changed since the state that was resumed


def _restore(s: _Setup) -> tuple[_Progress, Path | None]:
    """Resume ``run/state.pt``, or branch from ``train.branch_from``; ``(progress, source)``."""
    t, state_path = s.cfg.train, s.run / "state.pt"
    source = state_path if state_path.exists() else (Path(t.branch_from) if t.branch_from else None)
    if source is None:
        return _Progress(), None
    state = _load_state(source)
    changed = _what_changed(state, s.cfg, s.data)
    if changed:
        raise TrainingError(
            f"{source}: holds a run with another config ({', '.join(changed)} differ); only the network "
            "and the training images are fixed"
        )
    s.model.load_state_dict(state["model"])
    s.opt.load_state_dict(state["optimizer"])
    if s.ema is not None:
        s.ema.load_state_dict(state["ema"] or state["model"])
    done = _Progress(state["iteration"])
    if source == state_path:
        done.best, done.best_iter = state["best_psnr"], state["best_iter"]
        torch.set_rng_state(state["rng_cpu"])
        old, new = state["config"], s.cfg.to_dict()
        done.notes = [
            f"{sec}.{k} {old[sec].get(k)} -> {v}" for sec in ("data", "train") for k, v in new[sec].items()
            if old[sec].get(k) != v
        ]  # fmt: skip
    else:
        done.notes = [f"branched from {source} at iteration {done.iteration}"]
    if done.iteration > t.iterations:
        raise TrainingError(f"{source}: already at iteration {done.iteration}, past train.iterations={t.iterations}")
    return done, source


class _RunLog:
    """The run's record on rank 0: metrics.jsonl, TensorBoard (when installed), the progress
    bar and the console; every method is a no-op on the other ranks."""

    def __init__(self, s: _Setup, start: int, resumed: bool, progress: bool) -> None:
        self.on, self.device = s.rank == 0, s.device.type
        self.file = self.tb = self.bar = None
        self.sum, self.count = 0.0, 0
        self.tick, self.cpu_tick = time.perf_counter(), time.process_time()
        if not self.on:
            return
        metrics = s.run / "metrics.jsonl"
        if resumed and metrics.exists():  # rows logged after the state being resumed were lost with the run
            lines = metrics.read_text().splitlines()
            kept = [line for line in lines if line.strip() and json.loads(line).get("iter", 0) <= start]
            if len(kept) != len(lines):
                with atomic_path(metrics) as tmp:
                    tmp.write_text("".join(line + "\n" for line in kept))
        self.file = metrics.open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(s.run / "tb"))
        except ImportError:
            pass
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=s.cfg.train.iterations, initial=start, dynamic_ncols=True, unit="it")

    def say(self, message: str) -> None:
        if self.on:
            (self.bar.write if self.bar is not None else lambda m: print(m, flush=True))(message)

    def _write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def step(self, done: int, loss: float, learning_rate: float, every: int, last: bool = False) -> None:
        """One training step; every ``every`` steps, and at the run's ``last`` step, a row:
        mean loss, it/s, CPU-seconds of all ranks (a short run still leaves its numbers)."""
        self.sum, self.count = self.sum + loss, self.count + 1
        self.learning_rate = learning_rate
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
        if done % every and not last:
            return
        # CPU-seconds of every rank's process (all threads): what the run cost, not rank 0's share
        cpu, self.cpu_tick = _ranks_reduce(time.process_time() - self.cpu_tick), time.process_time()
        if not self.on:
            return
        mean = self.sum / self.count
        speed = self.count / (time.perf_counter() - self.tick)
        # device: GPU rows count as GPU-minutes, not CPU-hours
        self._write(
            {"iter": done, "loss": mean, "lr": learning_rate, "it_s": speed, "cpu_s": cpu, "device": self.device}
        )
        if self.tb is not None:
            self.tb.add_scalar("train/loss", mean, done)
            self.tb.add_scalar("train/lr", learning_rate, done)
        self.sum, self.count, self.tick = 0.0, 0, time.perf_counter()

    def validation(self, done: int, metrics: dict) -> None:
        self._write({"iter": done, "val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"]})
        if self.tb is not None:
            self.tb.add_scalar("val/psnr", metrics["psnr"], done)
            self.tb.add_scalar("val/ssim", metrics["ssim"], done)
        if self.bar is not None:
            self.bar.write(f"iter {done}: Set5 PSNR {metrics['psnr']:.3f} dB, SSIM {metrics['ssim']:.4f}")

    def close(self, run: Path) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
            plot_curves(run)
        if self.tb is not None:
            self.tb.close()


class _Checkpoint:
    """Writes the run's state and weights (rank 0): state.pt first, then latest.safetensors,
    so the weights are never ahead of the state; best.safetensors on a new best."""

    def __init__(self, s: _Setup) -> None:
        self.s = s
        t = s.cfg.train
        self.provenance = dict(dataset=",".join(s.cfg.data.train), recipe=json.dumps(s.cfg.to_dict()),
                               batch_size=t.batch_size)  # fmt: skip

    def save(self, p: _Progress, metrics: dict | None = None) -> None:
        s = self.s
        if s.rank != 0:
            return
        state = {
            "iteration": p.iteration,
            "model": s.model.state_dict(),
            "optimizer": s.opt.state_dict(),
            "ema": s.ema.state_dict() if s.ema is not None else {},
            "best_psnr": p.best,
            "best_iter": p.best_iter,
            "rng_cpu": torch.get_rng_state(),
            "config": s.cfg.to_dict(),
            "data": s.data.fingerprint,
        }
        extra = {"val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"]} if metrics else {}
        try:
            _atomic_torch_save(state, s.run / "state.pt")
            save_model(s.weights, s.run / "latest.safetensors", iterations=p.iteration, **self.provenance, **extra)
        except OSError as e:
            raise TrainingError(
                f"{s.run}: could not save the state at iteration {p.iteration} ({e.strerror or e})"
            ) from None

    def best(self, p: _Progress, metrics: dict) -> None:
        save_model(self.s.weights, self.s.run / "best.safetensors", iterations=p.iteration,
                   val_psnr=metrics["psnr"], val_ssim=metrics["ssim"], **self.provenance)  # fmt: skip


def _announce(s: _Setup, p: _Progress, source: Path | None) -> None:
    """config.yaml, and one line saying what runs where, from where."""
    if s.rank != 0:
        return
    s.run.mkdir(parents=True, exist_ok=True)
    (s.run / "config.yaml").write_text(yaml.safe_dump(s.cfg.to_dict(), sort_keys=False))
    m, cfg = s.model.config, s.cfg
    line = (
        f"train: {m.num_layers} layers x {m.embedding_dim} ch, x{m.scale}; {len(s.data)} images "
        f"({len(s.data.skipped)} skipped as smaller than the patch) loaded in {s.data.load_seconds:.1f}s "
        f"({s.data.cached} from the cache); "
        f"{s.world} rank(s) on {s.device}; starting at iteration {p.iteration}/{cfg.train.iterations}"
    )
    if cfg.model.init_from and source is None:
        line += f"; init from {cfg.model.init_from} (new: {', '.join(s.skipped) or 'none'})"
    if p.notes:
        line += f"; changed: {'; '.join(p.notes)}"
    print(line, flush=True)


def _step(s: _Setup, it: int, autocast) -> float:
    """One optimizer step on this rank's slice of global batch ``it``; the loss."""
    t = s.cfg.train
    low, hr, *teach = s.data.batch(it, s.per_rank, offset=s.rank * s.per_rank)
    low, hr = low.to(s.device, non_blocking=True), hr.to(s.device, non_blocking=True)
    teach = teach[0].to(s.device, non_blocking=True) if teach else None
    if t.channels_last:
        low = low.contiguous(memory_format=torch.channels_last)
    s.opt.zero_grad(set_to_none=False)
    n = low.shape[0]
    step = t.micro_batch if 0 < t.micro_batch < n else n
    total = 0.0
    for i in range(0, n, step):  # micro-batches: the batch's mean loss, its gradient accumulated
        last = i + step >= n
        sync = contextlib.nullcontext() if last or not hasattr(s.net, "no_sync") else s.net.no_sync()
        with sync:  # DDP: one all-reduce per step, after the last micro-batch
            with autocast:
                sr = s.net(low[i : i + step])
            loss = sr_loss(sr.float(), hr[i : i + step], t.fft_weight, t.pixel_loss)
            if t.balance:
                loss = loss + t.balance * balance_loss(s.gates)
                s.gates.clear()
            if teach is not None:  # distillation: L1 to the teacher's output too
                loss = loss + t.teacher_weight * F.l1_loss(sr.float(), teach[i : i + step])
            loss = loss * (min(step, n - i) / n)
            loss.backward()
        total += loss.item()
    for p in s.model.parameters():  # unrouted experts: zero gradient, as in the reference's dense path
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    s.opt.step()
    if s.ema is not None:
        with torch.no_grad():
            for pe, pm in zip(s.ema.parameters(), s.model.parameters(), strict=True):
                pe.lerp_(pm, 1 - t.ema_decay)
    return total


def _train(cfg: TrainConfig, run: Path, progress: bool, stop_after: int | None, stopping: _Stop) -> dict:
    s = _setup(cfg, run, progress)  # everything that can fail is checked before the first step
    p, source = _restore(s)
    _announce(s, p, source)
    log = _RunLog(s, p.iteration, source == run / "state.pt", progress)
    ckpt, t = _Checkpoint(s), cfg.train
    autocast = torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    end = t.iterations if stop_after is None else min(t.iterations, stop_after)
    s.net.train()
    stopping.start()
    validated = False
    for it in range(p.iteration, end):
        learning_rate = schedule_lr(it, t)
        for group in s.opt.param_groups:
            group["lr"] = learning_rate
        loss = _step(s, it, autocast)
        p.iteration = done = it + 1
        stop_now = stopping()  # read once: a SIGTERM between two reads would skip the save
        last = stop_now or done == end
        log.step(done, loss, learning_rate, t.log_every, last)
        metrics = None
        validated = validated or (s.val and done % t.val_every == 0)
        # a run that ends before its first validation still gets one, unless a SIGTERM ended it:
        # then the state is saved at once (torchrun's launcher kills its ranks 30 s after the signal)
        final = last and not validated and stopping.why != "SIGTERM"
        if s.val and s.rank == 0 and (done % t.val_every == 0 or done == t.iterations or final):
            validated = True
            metrics = validate(s.weights, s.val, s.model.config.scale)
            log.validation(done, metrics)
            if metrics["psnr"] > p.best:
                p.best, p.best_iter = metrics["psnr"], done
                ckpt.best(p, metrics)
        if done % t.ckpt_every == 0 or done == end or stop_now:
            ckpt.save(p, metrics)
        if stop_now:
            log.say(f"train: stopped at iteration {done} ({stopping.why}); state saved, rerun to resume")
            break
    log.close(run)
    return {"iteration": p.iteration, "best_psnr": p.best, "best_iter": p.best_iter, "model": s.model}
