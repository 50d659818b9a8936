"""The training campaign's bookkeeping (called by scripts/campaign.sh; usable on its own).

Its records live under ``campaign/`` (campaign/README.md): the resumable x2 trunk
(``trunk/``), runs in progress (``runs/``, each removed once evaluated), the ledger of every
branch and extension (``ledger.jsonl``), the validation curves of runs already gone
(``curves.jsonl``), the evaluations of the shipped weights (``results/``) and the recipe.

    python scripts/campaign.py status      trunk iterations, it/s, CPU-hours, latest PSNRs
    python scripts/campaign.py branches    x2 cool-down + x3/x4 fine-tunes from the trunk's
                                           current state, evaluated; ship what beats the package
    python scripts/campaign.py plot        docs/campaign.png (Set5 PSNR vs iterations and hours)
    python scripts/campaign.py adopt DIR   take the trunk state scripts/device_train.sh brought back
    python scripts/campaign.py extend --scale 4 --iters 1500
                                           continue the shipped x4 weights (warmup, linear decay)

Branches are named by the trunk iteration they start from, so rerunning ``branches``
after an interruption resumes them (each is an ordinary resumable run). A scale ships
when its new weights beat the shipped file on Set5 *and* B100 PSNR (the issue's rule);
the record of every branch goes to ``runs/campaign.jsonl``. Iterations are counted
from the start of x2 training: the trunk began from ``runs/tiny-x2`` (2000 iterations).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "campaign"
RUNS = CAMPAIGN / "runs"
HELD = CAMPAIGN / "held"  # the last weights of extensions that did not ship, for `extend --continues`
TRUNK = CAMPAIGN / "trunk"
LEDGER = CAMPAIGN / "ledger.jsonl"
CURVES = CAMPAIGN / "curves.jsonl"  # Set5 validation points of earlier runs, and what preceded the trunk
RESULTS = CAMPAIGN / "results"
RECIPE = CAMPAIGN / "recipes" / "cpu-trunk.yaml"
WEIGHTS = ROOT / "src" / "seemore_sr" / "weights"
BENCH = ROOT.parent / "shared" / "data" / "benchmark"
DATASETS = ("Set5", "Set14", "B100")
COOL = int(os.environ.get("COOL_ITERS", 600))  # x2 cool-down: linear decay to 0 from the trunk's lr
FINETUNE = int(os.environ.get("FT_ITERS", 800))  # x3 / x4: warmup 50, then linear decay to 0; 0: x2 only


def rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def costs(run: Path, threads: int = 2, start: int = 0):
    """Each log row with the CPU-seconds and GPU-seconds of the iterations it closes.

    CPU time is ``cpu_s`` where logged, else wall time x threads (the first runs' rows);
    rows trained on a GPU (``device == "cuda"``) count as GPU wall time only. ``start``: the
    iteration the run began at (a branch's trunk iteration).
    """
    last = start
    for r in rows(run):
        cpu = gpu = 0.0
        if "loss" in r:
            wall = (r["iter"] - last) / r["it_s"]
            if r.get("device") == "cuda":
                gpu = wall
            else:
                cpu = r.get("cpu_s", wall * threads)
            last = r["iter"]
        yield r, cpu, gpu


def cpu_hours(run: Path, start: int = 0) -> float:
    return sum(cpu for _, cpu, _ in costs(run, start=start)) / 3600


def gpu_minutes(run: Path, start: int = 0) -> float:
    return sum(gpu for _, _, gpu in costs(run, start=start)) / 60


def val_points(run: Path, iter_offset: int, hours_offset: float) -> list[tuple[int, float, float]]:
    """``(iterations, CPU-hours so far, Set5 PSNR)`` at each validation logged by ``run``."""
    points, hours = [], hours_offset
    for r, cpu, _ in costs(run):
        hours += cpu / 3600
        if "val_psnr" in r:
            points.append((iter_offset + r["iter"], hours, r["val_psnr"]))
    return points


def curves() -> list[dict]:
    return [json.loads(line) for line in CURVES.read_text().splitlines() if line.strip()] if CURVES.exists() else []


def _meta() -> dict:
    return next((r for r in curves() if r["series"] == "meta"), {})


def trunk_offset() -> int:
    """x2 iterations before the trunk (the run it was initialised from)."""
    return _meta().get("x2_iters_before_trunk", 0)


def hours_before_trunk() -> float:
    return _meta().get("cpu_hours_before_trunk", 0.0)


def trunk_iteration() -> int:
    import torch

    state = TRUNK / "state.pt"
    return torch.load(state, map_location="cpu", weights_only=True)["iteration"] if state.exists() else 0


def ledger() -> list[dict]:
    if not LEDGER.exists():
        return []
    return [json.loads(line) for line in LEDGER.read_text().splitlines() if line.strip()]


def shipped(scale: int) -> dict:
    path = RESULTS / f"bundled-x{scale}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def status() -> None:
    r = [x for x in rows(TRUNK) if "loss" in x]
    val = [x for x in rows(TRUNK) if "val_psnr" in x]
    speed = sorted(x["it_s"] for x in r[-8:])
    it = r[-1]["iter"] if r else 0
    print(f"trunk {TRUNK.relative_to(ROOT)}: iteration {it} (+{trunk_offset()} before the trunk)")
    if speed:
        print(f"  speed: {speed[len(speed) // 2]:.2f} it/s (median of the last {len(speed)} log rows)")
    hours = f"trunk {cpu_hours(TRUNK):.2f}, before it {hours_before_trunk():.2f}"
    print(f"  CPU-hours: {hours}; GPU-minutes: {gpu_minutes(TRUNK):.1f}")
    if val:
        v = val[-1]
        print(f"  latest validation (EMA weights, Set5, monitoring only): {v['val_psnr']:.3f} dB at {v['iter']}")
    for e in ledger()[-8:]:
        what = f"trunk {e['weights']} weights" if e.get("kind") == "trunk" else f"branch x{e['scale']}"
        print(
            f"  {what} at trunk {e['trunk_iter']} (+{e['branch_iters']}): "
            + ", ".join(f"{d} {e['eval'][d]['psnr']:.3f}" for d in DATASETS if d in e["eval"])
            + (" -> shipped" if e["shipped"] else "")
        )
    for s in (2, 3, 4):
        ship = shipped(s)
        if ship:
            print(f"  shipped x{s}: " + ", ".join(f"{d} {ship[d]['psnr']:.3f}" for d in DATASETS))


def seemore(*args: str, log: Path) -> None:
    """Run a ``seemore`` command; its output is shown and kept in ``log``."""
    cmd = [sys.executable, "-m", "seemore_sr", *args]
    print("+ seemore " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    log.write_text(f"$ seemore {' '.join(args)}\n{proc.stdout}")
    print(proc.stdout, end="")


def train_branch(run: Path, sets: list[str], threads: int, nproc: int = 1) -> subprocess.Popen:
    """``seemore train`` of a branch in the background; ``nproc`` > 1: that many data-parallel
    ranks of ``threads`` each under torchrun (one batch, split; the same steps as one process)."""
    args = ["train", str(RECIPE.relative_to(ROOT)), "--run", str(run.relative_to(ROOT)), "--no-progress"]
    args += [a for s in [*sets, "train.ema_decay=0", f"train.threads={threads}"] for a in ("--set", s)]
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    print(f"+ {'torchrun ' if launch else ''}seemore " + " ".join(args), flush=True)
    run.mkdir(parents=True, exist_ok=True)
    log = (run / "train.log").open("a")
    # "--": torchrun's own parser would take "--run" for an abbreviation of its "--run-path"
    cmd = ["nice", "-n", "10", sys.executable, *launch, "-m", "seemore_sr", *(["--"] if launch else []), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)


def wait_trained(jobs: list[tuple[str, Path, int, subprocess.Popen]]) -> None:
    """Wait for each ``(what, run, end, proc)`` to train ``run`` to iteration ``end``.

    A SIGTERM to the campaign is passed on to the trainers, which save their state after the
    step in flight (under torchrun the launcher hands it to every rank); a run that stopped
    short ends the campaign here, before any evaluation, and the same command resumes it.
    """
    stopping = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for *_, proc in jobs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        codes = [proc.wait() for *_, proc in jobs]
    finally:
        signal.signal(signal.SIGTERM, previous)
    for (what, run, end, _), code in zip(jobs, codes, strict=True):
        if code and not stopping:  # torchrun's launcher exits non-zero after passing a signal on
            sys.exit(f"{what} failed, see {run}/train.log")
        if (done := _reached(run)) < end:
            sys.exit(f"{what} stopped at iteration {done} of {end}; the same command resumes it")


def evaluate(run: Path, scale: int) -> dict:
    out = run / "eval.json"
    if not out.exists():
        data = [str(BENCH / d) for d in DATASETS]
        seemore("eval", str((run / "latest.safetensors").relative_to(ROOT)), "--data", *data, "--scale", str(scale),
                "--compare-paper", "--no-progress", "--json", str(out), log=run / "eval.txt")  # fmt: skip
    return json.loads(out.read_text())


def finish(
    run: Path,
    scale: int,
    trunk_iter: int,
    branch_iters: int,
    hours: float,
    gpu: float = 0.0,
    continues: str = "",
    keep: bool = False,
    sets: list[str] = (),
) -> None:
    """Evaluate a finished branch, ship it if it beats the package on Set5 and B100, record it
    (with its border rim, scripts/border_rim.py)."""
    if any(e["run"] == run.name for e in ledger()):
        return
    result = evaluate(run, scale)
    rim = border_rim(run / "latest.safetensors")
    old = shipped(scale)
    better = all(result[d]["psnr"] > old.get(d, {}).get("psnr", -1) for d in ("Set5", "B100"))
    if better:
        shutil.copyfile(run / "latest.safetensors", WEIGHTS / f"seemore-tiny-x{scale}.safetensors")
        shutil.copyfile(run / "eval.json", RESULTS / f"bundled-x{scale}.json")
        shutil.copyfile(run / "eval.txt", RESULTS / f"bundled-x{scale}.txt")
    entry = dict(run=run.name, scale=scale, trunk_iter=trunk_iter, x2_iters=trunk_offset() + trunk_iter,
                 branch_iters=branch_iters, cpu_hours=round(hours, 3), gpu_minutes=round(gpu, 2), eval=result,
                 shipped=better, rim=rim, **({"continues": continues} if continues else {}),
                 **({"sets": list(sets)} if sets else {}))  # fmt: skip
    with LEDGER.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    held = not better and bool(continues)  # an extension that missed: its weights can still be continued
    if held:
        HELD.mkdir(exist_ok=True)
        shutil.copyfile(run / "latest.safetensors", HELD / f"{run.name}.safetensors")
    if run.parent == RUNS and not keep:  # recorded in the ledger: the run's folder is history (git), not state
        shutil.rmtree(run)
    print(
        f"x{scale} from trunk {trunk_iter}: "
        + ", ".join(f"{d} {result[d]['psnr']:.3f}" for d in DATASETS)
        + (" -> shipped" if better else " -> not better than the shipped weights on Set5 and B100")
        + (f"; held in {HELD.relative_to(ROOT)}/ for extend --continues {run.name}" if held else "")
    )


def border_rim(weights: Path) -> dict:
    """Flat colours' drift near the border and inside, in levels (scripts/border_rim.py): the
    network's own, on the image alone (``--mirror 0``), what training changes."""
    out = weights.parent / "rim.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "border_rim.py"), "--weights", str(weights), "--mirror", "0"]
    cmd += ["--json", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    row = next(iter(json.loads(out.read_text())["rows"].values()))
    return {"border": row["border"], "interior": row["interior"]}


def trunk_snapshots(t: int) -> None:
    """Evaluate the trunk itself at iteration ``t``, raw weights and EMA, on Set5 and B100:
    with the cool-down branch this compares the schedule's three candidates at one point."""
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from seemore_sr import create_model, save_model

    if any(e.get("kind") == "trunk" and e["trunk_iter"] == t for e in ledger()):
        return
    state = torch.load(TRUNK / "state.pt", map_location="cpu", weights_only=True)
    for kind in ("model", "ema"):
        if not state[kind]:
            continue
        run = RUNS / f"campaign-x2-trunk-{t}-{'raw' if kind == 'model' else 'ema'}"
        run.mkdir(parents=True, exist_ok=True)
        model = create_model("seemore-tiny-x2")
        model.load_state_dict(state[kind])
        save_model(model, run / "latest.safetensors", iterations=trunk_offset() + t)
        out = run / "eval.json"
        data = [str(BENCH / d) for d in ("Set5", "B100")]
        seemore("eval", str((run / "latest.safetensors").relative_to(ROOT)), "--data", *data, "--scale", "2",
                "--no-progress", "--json", str(out), log=run / "eval.txt")  # fmt: skip
        (run / "latest.safetensors").unlink()
        entry = dict(run=run.name, kind="trunk", weights=kind, scale=2, trunk_iter=t, x2_iters=trunk_offset() + t,
                     branch_iters=0, eval=json.loads(out.read_text()), shipped=False)  # fmt: skip
        with LEDGER.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def branches() -> None:
    t = trunk_iteration()
    base_hours = hours_before_trunk() + cpu_hours(TRUNK)
    if os.environ.get("SNAPSHOTS", "1") == "1":
        trunk_snapshots(t)
    cool = RUNS / f"campaign-x2-cool-{t}"
    end = t + COOL
    if _reached(cool) < end:
        sets = [f"train.branch_from={(TRUNK / 'state.pt').relative_to(ROOT)}", f"train.iterations={end}",
                f"train.decay={COOL}", f"train.val_every={COOL}"]  # fmt: skip
        wait_trained([("x2 cool-down", cool, end, train_branch(cool, sets, threads=2))])
    # kept until the fine-tunes, which start from it, are done
    finish(cool, 2, t, COOL, base_hours + cpu_hours(cool, t), gpu_minutes(TRUNK), keep=True)
    jobs = []
    warm = min(50, FINETUNE // 4)
    scales = (3, 4) if FINETUNE > 0 else ()  # FT_ITERS=0: the cool-down alone (x3 / x4 wait for a GPU)
    for s in scales:
        run = RUNS / f"campaign-x{s}-ft-{t}"
        if _reached(run) >= FINETUNE:
            continue
        sets = [f"model.scale={s}", f"model.init_from={(cool / 'latest.safetensors').relative_to(ROOT)}",
                f"train.iterations={FINETUNE}", f"train.warmup={warm}", f"train.decay={FINETUNE - warm}",
                f"train.val_every={FINETUNE}"]  # fmt: skip
        jobs.append((f"x{s} fine-tune", run, FINETUNE, train_branch(run, sets, threads=1)))  # side by side
    wait_trained(jobs)
    for s in scales:
        run = RUNS / f"campaign-x{s}-ft-{t}"
        finish(run, s, t, FINETUNE, base_hours + cpu_hours(cool, t) + cpu_hours(run), gpu_minutes(TRUNK))
    shutil.rmtree(cool, ignore_errors=True)
    # The tree must stay small enough to travel to a GPU with the packed training set
    # (64 MiB): a branch keeps its log, eval and ledger entry; shipped weights live in the package.


def extend(
    scale: int,
    iters: int,
    lr: float,
    data: list[str] = (),
    tag: str = "",
    threads: int = 2,
    continues: str = "",
    extra: list[str] = (),
    nproc: int = 1,
) -> None:
    """Continue the shipped x``scale`` weights for ``iters`` more iterations (warmup 50, then a
    linear decay to 0 from ``lr``): a CPU session's way to give x3 / x4 more training than
    their short fine-tunes had. Ships by the same rule; the ledger counts the iterations and
    hours of the run it continues plus its own. ``data``: the training folders (default: the
    recipe's); ``tag`` names the run apart, so two arms of an A/B can run side by side;
    ``extra``: more ``--set`` overrides (e.g. ``data.synthetic=0.1``), kept in the ledger;
    ``nproc``: data-parallel ranks of ``threads`` each (torchrun), for one run on every core."""
    runs = [e for e in ledger() if e.get("scale") == scale and e.get("kind") != "trunk"]
    shipped_runs = [e for e in runs if e.get("shipped")]
    base = next((e for e in runs if e["run"] == continues), None) if continues else shipped_runs[-1]
    if base is None:
        sys.exit(f"extend: no x{scale} run {continues!r} in the ledger")
    total = base["branch_iters"] + iters
    run = RUNS / f"campaign-x{scale}-ext-{total}{'-' + tag if tag else ''}"
    init = run / "init.safetensors"
    if not init.exists():
        # the weights it continues: the package's (the last shipped run) or those held for a run that missed
        if not base.get("shipped"):
            source = HELD / f"{base['run']}.safetensors"
        elif base is shipped_runs[-1]:
            source = WEIGHTS / f"seemore-tiny-x{scale}.safetensors"
        else:
            sys.exit(f"extend: {base['run']} was shipped before {shipped_runs[-1]['run']}; its weights are gone")
        if not source.exists():
            sys.exit(f"extend: {source.relative_to(ROOT)} is missing: {base['run']}'s weights were not held")
        run.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, init)
    if _reached(run) < iters:
        sets = [f"model.scale={scale}", f"model.init_from={init.relative_to(ROOT)}", f"train.iterations={iters}",
                f"train.lr={lr}", "train.warmup=50", f"train.decay={iters - 50}",
                f"train.val_every={iters}"]  # fmt: skip
        if data:
            sets.append(f"data.train=[{', '.join(data)}]")
        sets += list(extra)
        wait_trained([(f"x{scale} extension", run, iters, train_branch(run, sets, threads=threads, nproc=nproc))])
    finish(run, scale, base["trunk_iter"], total, base["cpu_hours"] + cpu_hours(run), base.get("gpu_minutes") or 0.0,
           continues=base["run"], sets=list(extra))  # fmt: skip


def _iteration(run: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run / "latest.safetensors"), "pt") as f:
        return int(json.loads(f.metadata().get("provenance", "{}")).get("iterations", 0))


def _reached(run: Path) -> int:
    """The iteration ``run`` has trained to: 0 before its first checkpoint."""
    return _iteration(run) if (run / "latest.safetensors").exists() else 0


def adopt(folder: Path) -> None:
    """Take the trunk state that scripts/device_train.sh brought back from a GPU."""
    import torch

    if (TRUNK / "pid").exists():
        sys.exit("stop the trunk first (scripts/campaign.sh stop with BRANCHES=0)")
    new = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)["iteration"]
    if new <= trunk_iteration():
        sys.exit(f"{folder}: state at iteration {new} is not ahead of the trunk's {trunk_iteration()}")
    for name in ("state.pt", "latest.safetensors", "metrics.jsonl"):
        shutil.copyfile(folder / name, TRUNK / name)
    if (folder / "train.log").exists():  # the device's own log: GPU, options benchmark, branch commands
        shutil.copyfile(folder / "train.log", TRUNK / f"device-{new}.log")
    print(f"trunk now at iteration {new} (GPU-minutes so far: {gpu_minutes(TRUNK):.1f})")
    # The branches the device made from that state (device_train.sh with COOL_S): unpacked
    # into runs/, evaluated here and shipped if better, like the CPU's own (branches()).
    tars = [folder / f"{name}.tar" for name in ("cool", "x3", "x4") if (folder / f"{name}.tar").exists()]
    if not tars:
        return
    if os.environ.get("SNAPSHOTS", "1") == "1":
        trunk_snapshots(new)
    base_hours, base_gpu = hours_before_trunk() + cpu_hours(TRUNK), gpu_minutes(TRUNK)
    for tar in tars:
        with tarfile.open(tar) as t:
            (name,) = {Path(m.name).parts[0] for m in t.getmembers()}
            t.extractall(RUNS, filter="data")
        run = RUNS / name
        scale = 2 if tar.stem == "cool" else int(tar.stem[1])
        start = new if scale == 2 else 0
        done = _iteration(run) - start
        hours, gpu = cpu_hours(run, start), gpu_minutes(run, start)
        finish(run, scale, new, done, base_hours + hours, base_gpu + gpu)
        if scale == 2:  # the fine-tunes start from the cooled x2: they cost it too
            base_hours, base_gpu = base_hours + hours, base_gpu + gpu


def plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT / "src"))
    from seemore_sr.evaluation.evaluate import paper_numbers

    bic = {s: json.loads((RESULTS / f"bicubic-x{s}.json").read_text())["Set5"]["psnr"] for s in (2, 4)}
    off = trunk_offset()
    pre_pts = [(r["iter"], r["cpu_hours"], r["set5"]) for r in curves() if r["series"] == "x2-initial"]
    trunk_pts = val_points(TRUNK, off, hours_before_trunk())
    # the first x4 weights: fine-tuned from the 2000-iteration x2 in four stages (round 1)
    x4_pts = [(r["iter"], r["cpu_hours"], r["set5"]) for r in curves() if r["series"] == "x4-first"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, xi, xlabel in (
        (axes[0], 0, "x2 training iterations (batch 16)"),
        (axes[1], 1, "CPU-hours behind the weights (x2, then the scale's fine-tunes)"),
    ):
        ax.plot([p[xi] for p in pre_pts], [p[2] for p in pre_pts], "o-", color="C0", label="x2 (initial run)")
        if trunk_pts:
            ax.plot([p[xi] for p in trunk_pts], [p[2] for p in trunk_pts], ".-", color="C0", alpha=0.5,
                    label="x2 trunk (EMA, constant lr)")  # fmt: skip
        if x4_pts:
            ax.plot([p[xi] for p in x4_pts], [p[2] for p in x4_pts], "o-", color="C3",
                    label="x4 (first fine-tunes from x2 at 2000)")  # fmt: skip
        for e in ledger():
            if e["scale"] not in (2, 4) or e.get("kind") == "trunk":
                continue
            x = e["x2_iters"] + e["branch_iters"] if xi == 0 else e["cpu_hours"]
            ax.plot([x], [e["eval"]["Set5"]["psnr"]], "*" if e["shipped"] else "x", ms=11,
                    color="C0" if e["scale"] == 2 else "C3")  # fmt: skip
        for s, color in ((2, "C0"), (4, "C3")):
            ax.axhline(paper_numbers("SeemoRe-T", s)["set5"]["psnr"], color=color, ls="--", lw=1,
                       label=f"paper SeemoRe-T x{s}")  # fmt: skip
            ax.axhline(bic[s], color=color, ls=":", lw=1, label=f"bicubic x{s}")
        ax.plot([], [], "*", color="gray", ms=11, label="branch (shipped); x = not shipped; red = x4")
        ax.set(xlabel=xlabel, ylabel="Set5 PSNR (Y, dB)")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("training iterations (x2, then the scale's own fine-tune; batch 16)")
    axes[1].legend(fontsize=7, loc="center right")
    fig.suptitle("SeemoRe-T training campaign on 2-core CPUs: Set5 PSNR (monitoring; shipping needs Set5 and B100)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["status", "branches", "plot", "adopt", "extend"])
    p.add_argument("folder", nargs="?", help="adopt: the folder device_train.sh's files came back to")
    p.add_argument("--scale", type=int, choices=[2, 3, 4], help="extend: the shipped scale to continue")
    p.add_argument("--iters", type=int, default=1500, help="extend: iterations (default 1500)")
    p.add_argument("--lr", type=float, default=3e-4, help="extend: peak learning rate (default 3e-4)")
    p.add_argument("--data", nargs="+", default=[], help="extend: training folders (default: the recipe's)")
    p.add_argument("--tag", default="", help="extend: a suffix for the run's name (the arms of an A/B)")
    p.add_argument("--threads", type=int, default=2, help="extend: torch threads (default 2), per rank with --nproc")
    p.add_argument("--nproc", type=int, default=1, help="extend: data-parallel ranks under torchrun (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extend: another training override")
    p.add_argument(
        "--continues",
        default="",
        help="extend: the ledger run it continues: the shipped one (default), or one that missed, from campaign/held/",
    )
    p.add_argument("--out", default=str(ROOT / "docs" / "campaign.png"))
    args = p.parse_args()
    if args.command == "extend":
        if not args.scale:
            sys.exit("extend needs --scale")
        extend(args.scale, args.iters, args.lr, args.data, args.tag, args.threads, args.continues, args.set, args.nproc)
        return
    if args.command == "adopt":
        if not args.folder:
            sys.exit("adopt needs the folder with the device's state.pt")
        adopt(Path(args.folder))
        return
    {"status": status, "branches": branches, "plot": lambda: plot(Path(args.out))}[args.command]()


if __name__ == "__main__":
    main()
