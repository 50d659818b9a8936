"""scripts/campaign.py's bookkeeping for extensions: what ships, what is held, what continues what.

Training and evaluation are replaced by fakes, so these tests check the ledger, the
package's weights and ``campaign/held/`` without training anything.
"""

import json
import os
import shutil
import signal
import time

import pytest
import torch

from .conftest import load_script


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    mod = load_script("campaign")
    paths = {"ROOT": tmp_path, "RUNS": tmp_path / "campaign" / "runs", "HELD": tmp_path / "campaign" / "held",
             "LEDGER": tmp_path / "campaign" / "ledger.jsonl", "CURVES": tmp_path / "campaign" / "curves.jsonl",
             "RESULTS": tmp_path / "campaign" / "results", "WEIGHTS": tmp_path / "weights"}  # fmt: skip
    for name, path in paths.items():
        monkeypatch.setattr(mod, name, path)
    for folder in ("RUNS", "RESULTS", "WEIGHTS"):
        paths[folder].mkdir(parents=True)
    (paths["WEIGHTS"] / "seemore-tiny-x4.safetensors").write_bytes(b"shipped")
    (paths["RESULTS"] / "bundled-x4.json").write_text(json.dumps({"Set5": {"psnr": 30.0}, "B100": {"psnr": 27.0}}))
    (paths["RESULTS"] / "bundled-x4.txt").write_text("")
    first = {"run": "r0", "scale": 4, "trunk_iter": 1, "branch_iters": 100, "cpu_hours": 1.0, "shipped": True}
    paths["LEDGER"].write_text(json.dumps(first) + "\n")

    mod.started = []  # (run name, the init weights' bytes) of each fake training
    mod.launched = []  # (threads, nproc) of each
    mod.scores = []  # what the fake evaluation of the next runs returns: (Set5, B100)

    mod.trained = {}  # run name -> the iteration its fake training reached

    class Done:
        def wait(self):
            return 0

    def train_branch(run, sets, threads, nproc=1):
        init = (run / "init.safetensors").read_bytes()
        mod.started.append((run.name, init))
        mod.launched.append((threads, nproc))
        (run / "latest.safetensors").write_bytes(init + b"+trained")
        mod.trained[run.name] = int(next(s for s in sets if s.startswith("train.iterations=")).split("=")[1])
        return Done()

    def evaluate(run, scale):
        set5, b100 = mod.scores.pop(0)
        out = {"Set5": {"psnr": set5}, "Set14": {"psnr": 0.0}, "B100": {"psnr": b100}}
        (run / "eval.json").write_text(json.dumps(out))
        (run / "eval.txt").write_text("")
        return out

    mod.real_train_branch = mod.train_branch
    monkeypatch.setattr(mod, "train_branch", train_branch)
    monkeypatch.setattr(mod, "evaluate", evaluate)
    monkeypatch.setattr(mod, "_iteration", lambda run: mod.trained[run.name])
    monkeypatch.setattr(mod, "border_rim", lambda weights: {"border": 0, "interior": 0})
    return mod


def test_an_extension_that_misses_is_held_and_can_be_continued(campaign):
    campaign.scores = [(29.9, 27.1), (30.1, 27.1)]  # misses on Set5; then beats the package on both
    campaign.extend(4, 10, 3e-4, tag="a")
    miss = campaign.ledger()[-1]
    assert miss["run"] == "campaign-x4-ext-110-a" and not miss["shipped"] and miss["continues"] == "r0"
    assert (campaign.HELD / "campaign-x4-ext-110-a.safetensors").read_bytes() == b"shipped+trained"
    assert not (campaign.RUNS / "campaign-x4-ext-110-a").exists()  # recorded: its folder is history

    campaign.extend(4, 20, 3e-4, tag="b", continues="campaign-x4-ext-110-a")
    assert campaign.started[-1] == ("campaign-x4-ext-130-b", b"shipped+trained")  # from the held weights
    hit = campaign.ledger()[-1]
    assert hit["shipped"] and hit["continues"] == "campaign-x4-ext-110-a" and hit["branch_iters"] == 130
    assert (campaign.WEIGHTS / "seemore-tiny-x4.safetensors").read_bytes() == b"shipped+trained+trained"
    assert sorted(p.name for p in campaign.HELD.iterdir()) == [
        "campaign-x4-ext-110-a.safetensors"
    ]  # a ship is not held


def test_extend_refuses_what_it_cannot_start_from(campaign, capsys):
    campaign.scores = [(30.1, 27.1)]
    campaign.extend(4, 10, 3e-4)  # ships: r0's weights are no longer the package's
    with pytest.raises(SystemExit, match="r0 was shipped before campaign-x4-ext-110; its weights are gone"):
        campaign.extend(4, 10, 3e-4, tag="c", continues="r0")
    with pytest.raises(SystemExit, match="no x4 run 'nowhere' in the ledger"):
        campaign.extend(4, 10, 3e-4, continues="nowhere")
    with campaign.LEDGER.open("a") as f:  # a miss recorded before runs were held
        f.write(json.dumps({"run": "old-miss", "scale": 4, "trunk_iter": 1, "branch_iters": 50, "shipped": False}))
    with pytest.raises(SystemExit, match=r"old-miss.safetensors is missing: old-miss's weights were not held"):
        campaign.extend(4, 10, 3e-4, continues="old-miss")
    assert [name for name, _ in campaign.started] == ["campaign-x4-ext-110"]  # nothing else started
    assert sorted(p.name for p in campaign.RUNS.iterdir()) == []  # and no empty run folders left behind


def test_extend_passes_its_ranks_on(campaign):
    campaign.scores = [(29.9, 27.1)]
    campaign.extend(4, 10, 3e-4, threads=1, nproc=2)
    assert campaign.launched == [(1, 2)]


@pytest.fixture
def real_branch(campaign, tmp_path, monkeypatch, random_images):
    """The campaign with its real recipe and trainer (torchrun) and four small noise images."""
    recipe = tmp_path / "campaign" / "recipes" / "cpu-trunk.yaml"
    recipe.parent.mkdir(parents=True)
    shutil.copyfile(campaign.RECIPE, recipe)
    monkeypatch.setattr(campaign, "RECIPE", recipe)
    random_images(tmp_path / "imgs", 4, size=(44, 40))
    return campaign


@pytest.mark.slow
def test_a_branch_trains_under_torchrun(real_branch):
    """--nproc 2: two gloo ranks of one thread train one branch in the recipe's channels_last
    (DDP's buffer broadcast failed there), one of them logs and writes (the CPU-seconds
    summed over ranks: test_train's torchrun test)."""
    run = real_branch.RUNS / "ddp"
    sets = ["model.init_from=null", "data.train=[imgs]", "data.val=null", "data.patch_size=16", "train.batch_size=4",
            "train.micro_batch=0", "train.iterations=4", "train.warmup=1", "train.log_every=2"]  # fmt: skip
    proc = real_branch.real_train_branch(run, sets, threads=1, nproc=2)
    assert proc.wait(timeout=300) == 0, (run / "train.log").read_text()[-3000:]
    log = (run / "train.log").read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if "loss" in r] == [2, 4], log[-3000:]
    assert log.count("train: ") >= 1 and (run / "latest.safetensors").exists()


def test_a_sigterm_to_the_campaign_is_passed_on_and_a_stopped_run_is_not_evaluated(campaign, tmp_path):
    """The campaign hands its SIGTERM to the trainer and waits for it; a run that stopped short
    (torchrun's launcher exits non-zero after passing a signal on) ends the campaign with how to
    resume, and is neither evaluated nor recorded."""

    class Trainer:
        signals = []

        def poll(self):
            return None

        def send_signal(self, sig):
            self.signals.append(sig)

        def wait(self):
            os.kill(os.getpid(), signal.SIGTERM)  # to the campaign, while it waits
            return 1

    run = tmp_path / "r"
    run.mkdir()
    (run / "latest.safetensors").write_bytes(b"")
    campaign.trained["r"] = 700
    trainer, before = Trainer(), signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit, match="x4 extension stopped at iteration 700 of 3400; the same command resumes"):
        campaign.wait_trained([("x4 extension", run, 3400, trainer)])
    assert trainer.signals == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before  # the campaign's own handling is back

    class Failed(Trainer):
        def wait(self):
            return 1

    with pytest.raises(SystemExit, match="x4 extension failed, see"):
        campaign.wait_trained([("x4 extension", run, 3400, Failed())])


@pytest.mark.slow
def test_a_sigterm_stops_every_torchrun_rank_after_the_same_step(real_branch):
    """SIGTERM to torchrun: its launcher passes it to both ranks, they agree on the step to stop
    after, rank 0 saves that step's state (not a checkpoint interval's) and both exit in time,
    so the launcher never has to kill them; the run then resumes from that step."""
    run = real_branch.RUNS / "stop"
    sets = ["model.init_from=null", "data.train=[imgs]", "data.val=null", "data.patch_size=16", "train.batch_size=4",
            "train.micro_batch=0", "train.warmup=1", "train.log_every=1", "train.ckpt_every=10000"]  # fmt: skip
    proc = real_branch.real_train_branch(run, [*sets, "train.iterations=10000"], threads=1, nproc=2)
    metrics, deadline = run / "metrics.jsonl", time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.1)
    assert proc.poll() is None, (run / "train.log").read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    sent = time.time()
    proc.wait(timeout=120)
    log = (run / "train.log").read_text()
    assert time.time() - sent < 30 and "forcefully" not in log, log[-3000:]  # the launcher's grace is 30 s
    stopped = [line for line in log.splitlines() if line.startswith("train: stopped at iteration")]
    assert len(stopped) == 1 and stopped[0].endswith("(SIGTERM); state saved, rerun to resume"), log[-3000:]
    done = int(stopped[0].split()[4])
    assert 1 <= done < 10000 and torch.load(run / "state.pt", weights_only=True)["iteration"] == done

    proc = real_branch.real_train_branch(run, [*sets, f"train.iterations={done + 2}"], threads=1, nproc=2)
    assert proc.wait(timeout=300) == 0, (run / "train.log").read_text()[-3000:]
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == done + 2
    assert f"starting at iteration {done}/" in (run / "train.log").read_text()
