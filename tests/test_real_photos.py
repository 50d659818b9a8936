"""Real photos: the degradation pipeline, the evaluation presets, the denoise strength and
its estimate, the routers' balance term, the ``-real`` names."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from seemore_sr.data.degrade import PRESETS, DegradeConfig, add_noise, degrade_lr, degrade_patch, jpeg
from seemore_sr.data.imresize import imresize
from seemore_sr.inference.denoise import blend_state, blockiness, estimate, jpeg_quality, noise_sigma

from .conftest import load_script


def _photo(h: int = 96, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like uint8 image: gradients and soft discs, no noise of its own."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([120 + 80 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in rng.uniform(0, 3, 3)], 2)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1, 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (0.1 + 0.2 * r) ** 2] += rng.uniform(-60, 60, 3)
    return np.clip(img, 0, 255).round().astype(np.uint8)


# -- the training pipeline ---------------------------------------------------------------------------


def test_degrade_patch_is_a_pure_function_of_its_generator():
    hr = _photo(96, 96)
    lr = imresize(hr, 1 / 4)
    cfg = DegradeConfig(enabled=True, clean=0.0)
    outs = [degrade_patch(hr, lr, 4, np.random.default_rng([0, it, 3, 0]), cfg) for it in range(12)]
    again = [degrade_patch(hr, lr, 4, np.random.default_rng([0, it, 3, 0]), cfg) for it in range(12)]
    assert all(o.shape == (24, 24, 3) and o.dtype == np.uint8 for o in outs)
    assert all(np.array_equal(a, b) for a, b in zip(outs, again, strict=True))
    assert sum(not np.array_equal(o, lr) for o in outs) >= 10  # degraded, and differently each draw
    assert len({o.tobytes() for o in outs}) == 12


def test_degrade_patch_keeps_the_clean_share_clean():
    hr = _photo(64, 64)
    lr = imresize(hr, 1 / 2)
    kept = [
        np.array_equal(degrade_patch(hr, lr, 2, np.random.default_rng(i), DegradeConfig(enabled=True, clean=c)), lr)
        for c in (1.0, 0.0)
        for i in range(8)
    ]
    assert all(kept[:8]) and not any(kept[8:])


def test_degrade_patch_stages_do_what_they_say():
    hr = _photo(96, 96)
    lr = imresize(hr, 1 / 2)
    only = dict(enabled=True, clean=0.0, blur=0.0, resize_mid=0.0, noise=0.0, jpeg=0.0, second=0.0)
    plain = degrade_patch(hr, lr, 2, np.random.default_rng(1), DegradeConfig(**only))
    assert np.abs(plain.astype(int) - lr).mean() < 3  # a downscale alone: close to the clean LR
    noisy = degrade_patch(hr, lr, 2, np.random.default_rng(1), DegradeConfig(**{**only, "noise": 1.0, "poisson": 0.0}))
    assert noise_sigma(noisy) > noise_sigma(plain) + 0.5
    blurred = degrade_patch(hr, lr, 2, np.random.default_rng(1), DegradeConfig(**{**only, "blur": 1.0}))
    grad = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()  # noqa: E731
    assert grad(blurred) < grad(plain)


def test_degradation_config_keys_nest_and_are_checked():
    from seemore_sr.training.config import ConfigError, load_config

    cfg = load_config("real", ["data.degrade.jpeg=0.5", "data.degrade.jpeg_quality=[40, 90]"])
    assert cfg.data.degrade.enabled and cfg.data.degrade.jpeg == 0.5 and cfg.data.degrade.jpeg_quality == [40, 90]
    with pytest.raises(ConfigError, match="data.degrade.noise"):
        load_config("real", ["data.degrade.noise=1.5"])
    with pytest.raises(ConfigError, match="data.degrade.jpeg_quality"):
        load_config("real", ["data.degrade.jpeg_quality=[90, 40]"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("real", ["data.degrade.nosuch=1"])
    assert not load_config("cpu").data.degrade.enabled  # the clean recipes stay clean


def test_paired_batches_degrade_reproducibly(tmp_path):
    from seemore_sr.data.paired import PairedImages

    for i in range(3):
        Image.fromarray(_photo(128, 128, seed=i)).save(tmp_path / f"{i}.png")
    clean = PairedImages([tmp_path], 2, 24, seed=3, cache=None)
    cfg = DegradeConfig(enabled=True, clean=0.0)
    real = PairedImages([tmp_path], 2, 24, seed=3, cache=None, degrade=cfg)
    lr_c, hr_c = clean.batch(5, 4)
    lr_r, hr_r = real.batch(5, 4)
    lr_r2, _ = PairedImages([tmp_path], 2, 24, seed=3, cache=None, degrade=cfg).batch(5, 4)
    assert torch.equal(hr_c, hr_r)  # the same crops, only the inputs degraded
    assert not torch.equal(lr_c, lr_r)
    assert torch.equal(lr_r, lr_r2)


# -- the evaluation presets --------------------------------------------------------------------------


def test_presets_are_seeded_by_name_and_degrade_as_named():
    hr = _photo(96, 96)
    lr = imresize(hr, 1 / 2)
    assert degrade_lr(lr, hr, 2, "clean", "a.png") is lr
    for name in PRESETS:
        a, b = degrade_lr(lr, hr, 2, name, "a.png"), degrade_lr(lr, hr, 2, name, "a.png")
        assert np.array_equal(a, b) and a.shape == lr.shape and a.dtype == np.uint8
    n5, n5b, n10 = (
        degrade_lr(lr, hr, 2, p, f) for p, f in (("noise5", "a.png"), ("noise5", "b.png"), ("noise10", "a.png"))
    )
    assert not np.array_equal(n5, n5b)  # another name, other draws
    d5, d10 = np.std(n5.astype(float) - lr), np.std(n10.astype(float) - lr)
    assert 4 < d5 < 6 and 8.5 < d10 < 11
    err = [np.abs(degrade_lr(lr, hr, 2, p, "a.png").astype(float) - lr).mean() for p in ("jpeg90", "jpeg70", "jpeg50")]
    assert 0 < err[0] < err[1] < err[2]
    gray = lr[..., 0]
    assert degrade_lr(gray, hr[..., 0], 2, "mixed", "g.png").shape == gray.shape


def test_cli_name_lists_match_the_library():
    from seemore_sr.cli import DEGRADE_PRESETS, EXECUTORS
    from seemore_sr.inference.executors import EXECUTORS as LIBRARY_EXECUTORS

    assert list(DEGRADE_PRESETS) == list(PRESETS) and EXECUTORS == LIBRARY_EXECUTORS


def test_eval_degrade_lowers_bicubic_and_saves_the_degraded_input(tmp_path):
    data = tmp_path / "Tiny" / "HR"
    data.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(_photo(64, 64, seed=i)).save(data / f"im{i}.png")
    psnr = {}
    for preset in ("clean", "noise10"):
        out = tmp_path / preset
        cmd = [sys.executable, "-m", "seemore_sr", "eval", "bicubic", "--scale", "2", "--data", str(data.parent)]
        cmd += ["--degrade", preset, "--no-progress", "--json", str(tmp_path / f"{preset}.json")]
        cmd += ["--save-images", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        import json

        psnr[preset] = json.loads((tmp_path / f"{preset}.json").read_text())["Tiny"]["psnr"]
        assert (out / "Tiny" / "im0_lr.png").exists() == (preset != "clean")
    assert psnr["noise10"] < psnr["clean"] - 1
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "seemore_sr",
            "eval",
            "bicubic",
            "--scale",
            "2",
            "--data",
            str(data.parent),
            "--degrade",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


# -- the strength estimate ---------------------------------------------------------------------------


def test_noise_estimate_follows_the_noise():
    img = _photo(128, 128)
    rng = np.random.default_rng(0)
    assert noise_sigma(img) < 1.5
    for sigma in (5, 10):
        est = noise_sigma(add_noise(img, rng, sigma, None, False))
        assert 0.75 * sigma < est < 1.3 * sigma


def test_jpeg_quality_is_read_from_the_tables():
    img = _photo(64, 64)
    for q in (30, 60, 75, 90):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        assert abs(jpeg_quality(Image.open(buf)) - q) <= 1
    assert jpeg_quality(Image.fromarray(img)) is None
    assert blockiness(jpeg(img, 30)) > blockiness(img) + 0.1


def test_auto_strength_is_zero_for_clean_and_grows_with_damage():
    img = _photo(128, 128)
    assert estimate(img).strength <= 0.1
    assert estimate(Image.fromarray(img)).strength <= 0.1
    noisy = add_noise(img, np.random.default_rng(0), 10, None, False)
    assert estimate(noisy).strength == 1.0
    strengths = []
    for q in (100, 95, 80):  # the quality ramp: 0 at 100, 1 from 90 down
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        e = estimate(Image.open(buf))
        assert e.quality is not None and "JPEG q" in e.describe()
        strengths.append(e.strength)
    assert strengths[0] == 0.0 and strengths[0] < strengths[1] < strengths[2] == 1.0


def test_blend_state_is_exact_at_both_ends():
    a = {"w": torch.randn(3, 3), "n": torch.tensor(4)}
    b = {"w": torch.randn(3, 3), "n": torch.tensor(4)}
    assert torch.equal(blend_state(a, b, 0.0)["w"], a["w"]) and torch.equal(blend_state(a, b, 1.0)["w"], b["w"])
    assert torch.allclose(blend_state(a, b, 0.25)["w"], 0.75 * a["w"] + 0.25 * b["w"])
    with pytest.raises(ValueError, match="different parameters"):
        blend_state(a, {"w": b["w"]}, 0.5)


@pytest.fixture
def weights_pair(tmp_path, monkeypatch):
    """A weights folder with a small clean x2 and a '-real' twin (the clean one, perturbed)."""
    from seemore_sr import create_model, save_model
    from seemore_sr.models import registry

    torch.manual_seed(0)
    clean = create_model("seemore-tiny-x2", num_layers=1, embedding_dim=8)
    save_model(clean, tmp_path / "seemore-tiny-x2.safetensors")
    with torch.no_grad():
        for p in clean.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(clean, tmp_path / "seemore-tiny-x2-real.safetensors")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    return tmp_path


def test_upscaler_denoise_interpolates_between_the_bundled_pair(weights_pair):
    from seemore_sr import Upscaler
    from seemore_sr.errors import OptionError

    img = _photo(24, 24)
    clean = Upscaler("seemore-tiny-x2", executor="nchw")(img)
    real = Upscaler("seemore-tiny-x2-real", denoise=1.0, executor="nchw")(img)
    assert np.array_equal(Upscaler("seemore-tiny-x2", denoise=0.0, executor="nchw")(img), clean)
    assert not np.array_equal(real, clean)
    half = Upscaler("seemore-tiny-x2", denoise=0.5, executor="nchw")(img).astype(int)
    assert np.abs(half - clean).mean() < np.abs(real.astype(int) - clean).mean()
    auto = Upscaler("seemore-tiny-x2-real", executor="nchw")  # -real: auto by default
    noisy = add_noise(img, np.random.default_rng(0), 16, None, False)  # reads over the noise ramp's 8 on 24 px
    for _ in range(2):  # strengths one after another: each blend is made from the untouched ends
        assert np.array_equal(auto(img), clean)
        assert auto.auto and auto.estimate.strength == 0.0 and auto.strength == 0.0
        assert np.array_equal(auto(noisy), Upscaler("seemore-tiny-x2-real", denoise=1.0, executor="nchw")(noisy))
        assert auto.strength == 1.0
    for bad in (1.5, -0.1, "strong", True):
        with pytest.raises(OptionError, match="denoise"):
            Upscaler("seemore-tiny-x2", denoise=bad)
    shutil.move(weights_pair / "seemore-tiny-x2-real.safetensors", weights_pair.parent / "gone.safetensors")
    with pytest.raises(OptionError, match="bundled clean and -real"):
        Upscaler("seemore-tiny-x2", denoise=0.5)


def test_upscale_cli_reports_the_auto_strength(weights_pair, tmp_path, monkeypatch):
    from seemore_sr.cli import main

    Image.fromarray(add_noise(_photo(32, 32), np.random.default_rng(0), 12, None, False)).save(tmp_path / "n.png")
    lines = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    code = main(["upscale", str(tmp_path / "n.png"), "-o", str(tmp_path / "out"), "--model", "seemore-tiny-x2-real",
                 "--executor", "nchw", "--no-progress"])  # fmt: skip
    assert code == 0
    text = "\n".join(lines)
    assert "n.png: denoise 1.0 (auto" in text and "denoise (auto) 1.0" in text


# -- names and routing -------------------------------------------------------------------------------


def test_real_names_are_registered_and_unknown_names_say_what_is_bundled():
    from seemore_sr import list_models
    from seemore_sr.models.registry import clean_name, config_for, parse_name

    assert "seemore-tiny-x4-real" in list_models() and "seemore-tiny-x2-real" in list_models()
    assert parse_name("seemore-tiny-x4-real") == ("tiny", 4)
    assert config_for("seemore-tiny-x4-real") == config_for("seemore-tiny-x4")
    assert clean_name("seemore-tiny-x4-real") == "seemore-tiny-x4"
    with pytest.raises(ValueError, match="with bundled weights: .*seemore-tiny-x4"):
        parse_name("seemore-huge-x4")


def test_balance_loss_is_one_when_balanced_and_pushes_off_the_favourite():
    from seemore_sr.training.trainer import balance_loss

    balanced = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    assert balance_loss([balanced]).item() == pytest.approx(1.0, abs=0.05)
    collapsed = torch.tensor([[0.0, 0.0, 3.0]] * 4, requires_grad=True)
    loss = balance_loss([collapsed])
    assert loss.item() > 2
    loss.backward()
    assert (collapsed.grad[:, 2] > 0).all() and (collapsed.grad[:, :2] < 0).all()  # descent lowers expert 2


def test_training_with_balance_and_degradations_runs(tmp_path):
    from seemore_sr.training.config import load_config
    from seemore_sr.training.trainer import train

    for i in range(2):
        Image.fromarray(_photo(96, 96, seed=i)).save(tmp_path / f"{i}.png")
    sets = [f"data.train=[{tmp_path}]", "data.val=null", "data.patch_size=16", "train.iterations=2",
            "train.batch_size=2", "train.micro_batch=1", "train.warmup=0", "train.decay=0", "train.log_every=1",
            "model.init_from=null", "train.balance=0.1"]  # fmt: skip
    result = train(load_config("real", sets + ["model.scale=2"]), tmp_path / "run", progress=False)
    assert result["iteration"] == 2


def test_video_auto_strength_is_decided_once_from_the_first_frames(weights_pair, tmp_path, monkeypatch):
    av = pytest.importorskip("av")
    from seemore_sr.cli import main

    rng = np.random.default_rng(0)
    base = _photo(48, 64)
    src = tmp_path / "noisy.mkv"
    with av.open(str(src), "w") as c:  # noisy first frames, clean later ones: one strength for all
        v = c.add_stream("ffv1", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "bgr0"
        for p in range(12):
            img = add_noise(base, rng, 12, None, False) if p < 8 else base
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
            f.pts = p
            for packet in v.encode(f):
                c.mux(packet)
        for packet in v.encode(None):
            c.mux(packet)
    lines = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "--model", "seemore-tiny-x2-real", "--executor", "nchw"]
    assert main([*args, "--video-codec", "ffv1", "--no-progress"]) == 0
    text = "\n".join(lines)
    assert "noisy.mkv: denoise 1.0 (auto" in text and "from its first frames" in text
    with av.open(str(tmp_path / "out" / "noisy.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12


def test_calibration_finds_the_ramps_the_psnr_follows():
    """scripts/calibrate_denoise.py: samples whose best strength follows known ramps (noise 2
    to 6, blockiness 1.04 to 1.10, quality 95 to 70) give those ramps back."""
    cal = load_script("calibrate_denoise")
    rng = np.random.default_rng(0)
    truth = {"quality": (95.0, 70.0), "blockiness": (1.04, 1.1), "noise": (2.0, 6.0)}
    rows = []
    for kind in ("clean", "jpeg", "noise", "mixed"):
        for _ in range(60):
            q = int(rng.integers(40, 100)) if kind in ("jpeg", "mixed") else None
            block = 1.0 + (100 - q) / 400 if q else float(rng.uniform(0.99, 1.02))
            noise = float(rng.uniform(0, 12)) if kind in ("noise", "mixed") else float(rng.uniform(0.5, 1.5))
            best = max(cal.ramp(noise, truth["noise"]), cal.ramp(q, truth["quality"]) if q else 0.0)
            if q:  # the pixels' cue agrees with the file's: one best strength for both
                best = max(best, cal.ramp(block, truth["blockiness"]))
                block = truth["blockiness"][0] + cal.ramp(q, truth["quality"]) * 0.06
            psnr = [30 - abs(s - best) for s in cal.STRENGTHS]
            rows.append({"kind": kind, "quality": q, "blockiness": block, "noise": noise, "psnr": psnr})
    groups = {f"{k} ({src})": cal.Samples([r for r in rows if r["kind"] == k], file=src == "file")
              for k in ("clean", "jpeg", "noise", "mixed") for src in ("pixels", "file")}  # fmt: skip
    grid = {"blockiness": ([1.0, 1.04, 1.08], [1.06, 1.1, 1.2]), "noise": ([1.0, 2.0, 3.0], [4.0, 6.0, 8.0]),
            "quality": ([100.0, 95.0, 90.0], [80.0, 70.0, 60.0])}  # fmt: skip
    fitted = cal.fit(groups, grid)
    assert cal.objective(groups, fitted) < 0.02 < cal.objective(groups, {**truth, "noise": (6.0, 12.0)})
    assert fitted == truth
