"""``seemore train``: the paper's recipe, resumable, data-parallel.

The loop reads top to bottom: build model and data, restore the latest state if any,
then step / log / validate / checkpoint. Run directory layout::

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

import json
import math
import os
import signal
import threading
import time
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
from ..models.seemore import SeemoRe
from .config import ConfigError, TrainConfig, TrainSection

__all__ = ["train", "sr_loss", "lr_at", "schedule_lr", "TrainingError"]


class TrainingError(ValueError):
    pass


def sr_loss(sr: Tensor, hr: Tensor, fft_weight: float = 0.1) -> Tensor:
    """L1 in pixels + ``fft_weight`` x L1 between real/imag parts of ``rfft2``."""
    pixel = F.l1_loss(sr, hr)
    if fft_weight == 0:
        return pixel
    a = torch.fft.rfft2(sr.float())
    b = torch.fft.rfft2(hr.float())
    freq = F.l1_loss(torch.view_as_real(a), torch.view_as_real(b))
    return pixel + fft_weight * freq


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
    from ..inference.fast import optimize

    fast = optimize(model.eval())
    model.train()
    ps, ss = [], []
    for lr, hr in pairs:
        sr = fast(lr).clamp(0, 1)
        ps.append(psnr_torch(sr, hr, scale).item())
        ss.append(ssim_torch(sr, hr, scale).item())
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
        a.plot(*zip(*loss, strict=False))
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

    Both act only in a single-process run (under torchrun every rank must stop at the
    same step), the handler only on the main thread; ``restore`` puts the previous one
    back. The time limit counts from ``start()``, the first training step.
    """

    def __init__(self, time_limit: float | None) -> None:
        single = int(os.environ.get("WORLD_SIZE", "1")) == 1
        self.signalled, self.deadline = False, math.inf
        self.time_limit = time_limit if single else None
        self.previous = None
        if single and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_: object) -> None:
        self.signalled = True

    def start(self) -> None:
        if self.time_limit is not None:
            self.deadline = time.perf_counter() + self.time_limit

    def __call__(self) -> bool:
        return self.signalled or time.perf_counter() > self.deadline

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
    """Train (or resume) in ``run_dir``. ``stop_after`` ends early at that iteration (tests).

    A SIGTERM, or ``time_limit`` seconds of training (counted from the first step, so
    loading and validation before it are not charged), stops the run cleanly: the
    iteration in flight finishes, the state is saved, and rerunning resumes from there.
    """
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
                "../shared/data beside the checkout); pass --set 'data.train=[FOLDER, ...]' with your HR images"
            )
    if cfg.data.val and not Path(cfg.data.val).is_dir():
        raise TrainingError(
            f"data.val: {cfg.data.val}: no such folder; pass --set data.val=FOLDER (HR/ and optional "
            "LR_bicubic/X{s}/, as the benchmarks are laid out) or --set data.val=null to train without validation"
        )


def _train(cfg: TrainConfig, run: Path, progress: bool, stop_after: int | None, stopping: _Stop) -> dict:
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
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
    per_rank = t.batch_size // world

    # --- everything that can fail is checked before the first step
    _check_data_paths(cfg)
    mcfg = config_for(f"seemore-{cfg.model.variant}-x{cfg.model.scale}")
    torch.manual_seed(t.seed)
    model = SeemoRe(mcfg)
    skipped: list[str] = []
    if cfg.model.init_from:
        skipped = _init_from(model, cfg.model.init_from)
    data = PairedImages(cfg.data.train, mcfg.scale, cfg.data.patch_size, t.seed, cfg.data.skip_small)
    val = _val_set(cfg.data.val, mcfg.scale) if cfg.data.val else []
    model.to(device)
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    ema = None
    if t.ema_decay:
        ema = SeemoRe(mcfg).to(device)
        ema.load_state_dict(model.state_dict())
        ema.requires_grad_(False)
    state_path = run / "state.pt"
    start, best, history_best_iter = 0, -math.inf, None
    source = state_path if state_path.exists() else (Path(t.branch_from) if t.branch_from else None)
    resumed_from = None
    if source is not None:
        state = _load_state(source)
        changed = _what_changed(state, cfg, data)
        if changed:
            raise TrainingError(
                f"{source}: holds a run with another config ({', '.join(changed)} differ); only the network "
                "and the training images are fixed"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"] or state["model"])
        start = state["iteration"]
        if source == state_path:
            best, history_best_iter = state["best_psnr"], state["best_iter"]
            torch.set_rng_state(state["rng_cpu"])
            old, new = state["config"], cfg.to_dict()
            resumed_from = [
                f"{sec}.{k} {old[sec].get(k)} -> {v}"
                for sec in ("data", "train")
                for k, v in new[sec].items()
                if old[sec].get(k) != v
            ]
        else:
            resumed_from = [f"branched from {source} at iteration {start}"]
        if start > t.iterations:
            raise TrainingError(f"{source}: already at iteration {start}, past train.iterations={t.iterations}")
    net: nn.Module = model
    if distributed:
        # Ranks route to different experts, so some parameters go unused on some ranks.
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        print(
            f"train: {mcfg.num_layers} layers x {mcfg.embedding_dim} ch, x{mcfg.scale}; {len(data)} images "
            f"({len(data.skipped)} skipped as smaller than the patch) loaded in {data.load_seconds:.1f}s; "
            f"{world} rank(s) on {device}; starting at iteration {start}/{t.iterations}"
            + (
                f"; init from {cfg.model.init_from} (new: {', '.join(skipped) or 'none'})"
                if cfg.model.init_from and source is None
                else ""
            )
            + (f"; changed: {'; '.join(resumed_from)}" if resumed_from else ""),
            flush=True,
        )
    provenance = dict(dataset=",".join(cfg.data.train), recipe=json.dumps(cfg.to_dict()), batch_size=t.batch_size)

    def save(it: int, metrics: dict | None = None) -> None:
        """state.pt first, then the weights: latest.safetensors is never ahead of the state."""
        if rank != 0:
            return
        weights = ema if ema is not None else model
        state = {
            "iteration": it,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "ema": ema.state_dict() if ema is not None else {},
            "best_psnr": best,
            "best_iter": history_best_iter,
            "rng_cpu": torch.get_rng_state(),
            "config": cfg.to_dict(),
            "data": data.fingerprint,
        }
        try:
            _atomic_torch_save(state, state_path)
            save_model(weights, run / "latest.safetensors", iterations=it, **provenance, **(metrics or {}))
        except OSError as e:
            raise TrainingError(f"{run}: could not save the state at iteration {it} ({e.strerror or e})") from None

    if rank == 0 and source == state_path and (run / "metrics.jsonl").exists():
        # rows logged after the state being resumed were lost with the run: drop them
        lines = (run / "metrics.jsonl").read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("iter", 0) <= start]
        if len(kept) != len(lines):
            with atomic_path(run / "metrics.jsonl") as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))

    log = (run / "metrics.jsonl").open("a") if rank == 0 else None
    tb = None
    if rank == 0:
        try:  # TensorBoard when installed; the JSONL log is always written
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(run / "tb"))
        except ImportError:
            pass
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=t.iterations, initial=start, dynamic_ncols=True, unit="it")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    end = t.iterations if stop_after is None else min(t.iterations, stop_after)
    net.train()
    running, count, tick, cpu_tick = 0.0, 0, time.perf_counter(), time.process_time()
    stopping.start()
    for it in range(start, end):
        for group in opt.param_groups:
            group["lr"] = schedule_lr(it, t)
        lr, hr = data.batch(it, per_rank, offset=rank * per_rank)
        lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
        if t.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        with autocast:
            sr = net(lr)
        loss = sr_loss(sr.float(), hr, t.fft_weight)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        for p in params:  # unrouted experts: zero gradient, as in the reference's dense path
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=False):
                    pe.lerp_(pm, 1 - t.ema_decay)
        running += loss.item()
        count += 1
        done = it + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if done % t.log_every == 0 and log is not None:
            speed = count / (time.perf_counter() - tick)
            cpu = time.process_time() - cpu_tick  # CPU-seconds of this process (all threads)
            row = {"iter": done, "loss": running / count, "lr": opt.param_groups[0]["lr"], "it_s": speed, "cpu_s": cpu}
            row["device"] = device.type  # GPU rows count as GPU-minutes, not CPU-hours
            log.write(json.dumps(row) + "\n")
            log.flush()
            if tb is not None:
                tb.add_scalar("train/loss", running / count, done)
                tb.add_scalar("train/lr", opt.param_groups[0]["lr"], done)
            running, count, tick, cpu_tick = 0.0, 0, time.perf_counter(), time.process_time()
        metrics = None
        if val and (done % t.val_every == 0 or done == t.iterations) and rank == 0:
            metrics = validate(ema if ema is not None else model, val, mcfg.scale)
            if log is not None:
                log.write(json.dumps({"iter": done, "val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"]}) + "\n")
                log.flush()
            if tb is not None:
                tb.add_scalar("val/psnr", metrics["psnr"], done)
                tb.add_scalar("val/ssim", metrics["ssim"], done)
            if bar is not None:
                bar.write(f"iter {done}: Set5 PSNR {metrics['psnr']:.3f} dB, SSIM {metrics['ssim']:.4f}")
            if metrics["psnr"] > best:
                best, history_best_iter = metrics["psnr"], done
                save_model(
                    ema if ema is not None else model,
                    run / "best.safetensors",
                    iterations=done,
                    val_psnr=metrics["psnr"],
                    val_ssim=metrics["ssim"],
                    **provenance,
                )
        stop_now = stopping()  # read once: a SIGTERM between two reads would skip the save
        if done % t.ckpt_every == 0 or done == end or stop_now:
            save(done, {"val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"]} if metrics else None)
        if stop_now:
            if rank == 0:
                why = "SIGTERM" if stopping.signalled else "time limit"
                print(f"train: stopped at iteration {done} ({why}); state saved, rerun to resume", flush=True)
            end = done
            break
    if bar is not None:
        bar.close()
    if log is not None:
        log.close()
        plot_curves(run)
    if tb is not None:
        tb.close()
    train.last_model_state = model.state_dict()  # type: ignore[attr-defined]  # for callers and tests
    return {"iteration": end, "best_psnr": best, "best_iter": history_best_iter}
