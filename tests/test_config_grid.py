"""One test over every preset and a grid of configs: every inference path against
the eager reference, on perturbed weights (norm affines far from (1, 0), non-zero biases),
so a folding bug cannot hide behind identity affines.

Paths: ``optimize`` with each CPU executor, tiled NHWC and tiled NCHW through ``Upscaler``,
the exported graph in onnxruntime and, where a GPU is present, the CUDA-graph path.
"""

import numpy as np
import pytest
import torch

from seemore_sr import Upscaler, list_models, optimize
from seemore_sr.inference.fast import EXECUTORS
from seemore_sr.inference.tiling import group_halo
from seemore_sr.models.registry import config_for
from seemore_sr.models.seemore import SeemoRe, SeemoReConfig

SMALL = dict(scale=2, num_layers=2, embedding_dim=16)
GRID = {
    **{name.removeprefix("seemore-"): config_for(name) for name in list_models()},
    "topk2": SeemoReConfig(**SMALL, topk=2),
    "gray": SeemoReConfig(**SMALL, in_chans=1),
    "linear": SeemoReConfig(**SMALL, lr_space="linear"),
    "double": SeemoReConfig(**SMALL, lr_space="double"),
    "4-experts": SeemoReConfig(**SMALL, num_experts=4),
    "kernel-7": SeemoReConfig(**SMALL, global_kernel_size=7),
    "kernel-15": SeemoReConfig(**SMALL, global_kernel_size=15),
    "kernel-21": SeemoReConfig(**SMALL, global_kernel_size=21),
    "no-shuffle": SeemoReConfig(**SMALL, use_shuffle=False),
    "img-range-255": SeemoReConfig(**SMALL, img_range=255.0),
    "recursive-3": SeemoReConfig(**SMALL, recursive=3),
}
TOL = 1e-5
FAST = {"tiny-x4", "base-x2", "large-x3"}  # the golden vectors' presets; the other nine are marked slow
CASES = [pytest.param(n, marks=pytest.mark.slow) if n.count("-x") and n not in FAST else n for n in GRID]


def perturbed(cfg: SeemoReConfig, seed: int = 0) -> SeemoRe:
    """A network whose every weight is moved off its init: norm weights around 1 +- 0.3,
    norm and conv biases around 0 +- 0.02 (a fresh model has (1, 0) norms and 0 biases);
    small enough that outputs stay in an image's range, where 1e-5 is a few float ulps."""
    torch.manual_seed(seed)
    model = SeemoRe(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.mul_(1 + 0.3 * torch.randn_like(p))
            else:
                p.add_(0.02 * torch.randn_like(p))
    return model


def inputs(cfg: SeemoReConfig) -> torch.Tensor:
    f = cfg.min_size
    x = torch.rand(2, cfg.in_chans, 2 * f + 5, 2 * f + 13, generator=torch.Generator().manual_seed(1))
    x[1] = 1 - x[1]  # the two images route differently
    return x


@pytest.mark.parametrize("name", CASES)
def test_every_path_matches_the_module(name):
    cfg = GRID[name]
    model = perturbed(cfg)
    x = inputs(cfg)
    f = cfg.min_size
    with torch.no_grad():
        ref = model(x)
        for executor in EXECUTORS:
            assert (optimize(model, executor)(x) - ref).abs().max() <= TOL, executor
        for executor in ("nhwc-fused", "nchw"):  # the CPU's tiled path and the layout a GPU tiles in
            up = Upscaler(model, device="cpu", tile=f, executor=executor)
            assert up.tiled(*x.shape[-2:]) == f  # 3 x 3 tiles with ragged edges: really tiled
            assert (up(x) - ref.clamp(0, 1)).abs().max() <= TOL, executor


@pytest.mark.parametrize("name", CASES)
def test_exported_graph_matches_the_module(name, tmp_path):
    """The ONNX graph in onnxruntime, on an input below the network's minimum size too
    (recursive 3 needs 64 pixels a side: the graph pads inside, as the module does)."""
    ort = pytest.importorskip("onnxruntime")
    from seemore_sr.inference.export import export_onnx

    cfg = GRID[name]
    model = perturbed(cfg)
    sess = ort.InferenceSession(str(export_onnx(model, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    small = torch.rand(1, cfg.in_chans, 52, 68, generator=torch.Generator().manual_seed(2))
    for x in (inputs(cfg), small):
        with torch.no_grad():
            ref = model(x).numpy()
        (y,) = sess.run(["sr"], {"lr": x.numpy()})
        assert y.shape == ref.shape and np.abs(y - ref).max() <= TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph path needs a GPU")
@pytest.mark.parametrize("name", GRID)
def test_cuda_graph_path_matches_the_module(name):
    cfg = GRID[name]
    model = perturbed(cfg).cuda()
    x = inputs(cfg).cuda()
    fast = optimize(model)
    assert fast.executor == "cuda-graphs"
    with torch.no_grad():
        ref = model(x)
        for _ in range(3):  # eager, capture, replay
            assert (fast(x) - ref).abs().max() <= TOL


def test_upscaler_gray_network_takes_any_image():
    """A 1-channel network (in_chans=1): gray images go through as they are, colour images
    channel by channel (it failed with "expected ... 1 channels, but got 3")."""
    model = perturbed(GRID["gray"])
    up = Upscaler(model, device="cpu", tile=0)
    rgb = np.random.default_rng(0).integers(0, 256, (21, 19, 3), dtype=np.uint8)
    out = up(rgb)
    with torch.no_grad():
        planes = torch.from_numpy(rgb).permute(2, 0, 1)[:, None].float() / 255
        ref = model(planes).clamp(0, 1)[:, 0].permute(1, 2, 0).numpy()
    assert out.shape == (42, 38, 3) and np.abs(out.astype(float) - np.floor(ref * 255 + 0.5)).max() <= 1
    assert up(rgb[..., 0]).shape == (42, 38)


def test_halo_grows_with_the_kernel():
    """The striped conv of SME reaches kernel // 2 pixels: a fixed 10-pixel halo (enough for
    the released kernel 11) gave 3e-3 errors at kernel 21."""
    assert group_halo(config_for("seemore-tiny-x2")) == 10
    assert group_halo(SeemoReConfig(**SMALL, global_kernel_size=21)) == 15


def test_auto_executor_does_not_depend_on_threads(tmp_path, monkeypatch):
    """One process and torchrun's ranks (fewer threads each) must run the same executor and
    write the same bytes: the choice is kept per machine, not per thread count, and auto
    chooses only executors whose output does not change with the thread count."""
    from seemore_sr.inference import calibrate

    monkeypatch.setenv("SEEMORE_CACHE", str(tmp_path))
    monkeypatch.setattr(calibrate, "_CHOSEN", {})
    model = perturbed(SeemoReConfig(**SMALL))
    x = inputs(model.config)
    before = torch.get_num_threads()
    try:
        outs, chosen = [], []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            fast = optimize(model)
            chosen.append(fast.executor)
            with torch.no_grad():
                outs.append(fast(x))
    finally:
        torch.set_num_threads(before)
    assert chosen[0] == chosen[1] and set(calibrate.candidates()) <= {"nhwc-fused", "nhwc-fused-ln", "nhwc"}
    assert torch.equal(outs[0], outs[1])


def test_table_choice_without_measuring(monkeypatch):
    """SEEMORE_CALIBRATE=0: the executor from the CPU's vendor and flags (the measured
    winners of BENCHMARKS.md), one the CLI and optimize accept."""
    from seemore_sr import create_model
    from seemore_sr.inference import calibrate

    monkeypatch.setenv("SEEMORE_CALIBRATE", "0")
    monkeypatch.delenv("SEEMORE_EXECUTOR", raising=False)
    seen = {}
    for vendor, flags in (("GenuineIntel", "avx2 avx512f"), ("AuthenticAMD", "avx2 avx512f"), ("AuthenticAMD", "avx2")):
        monkeypatch.setattr(calibrate, "_cpuinfo", lambda v=vendor, f=flags: {"vendor_id": v, "flags": f})
        seen[(vendor, flags)] = calibrate.fastest_executor(create_model("seemore-tiny-x2"))
    assert set(seen.values()) <= set(EXECUTORS)
    if calibrate.DNN:
        assert seen[("GenuineIntel", "avx2 avx512f")] == "nhwc-fused-ln"
        assert seen[("AuthenticAMD", "avx2 avx512f")] == "nhwc-fused"
    assert seen[("AuthenticAMD", "avx2")] == "nhwc"


@pytest.mark.parametrize("n", [2, 3, 4, 5, 9])
def test_timing_order_is_balanced(n):
    """The benchmarks' and the calibration's timing order: each round runs every path once;
    over n rounds (2n for odd n) every path runs in every position, and right after every
    other path, equally often, so no path always pays for the same predecessor."""
    from collections import Counter

    from seemore_sr.bench import interleaved

    keys = [f"p{i}" for i in range(n)]
    rounds = n if n % 2 == 0 else 2 * n
    order = interleaved(keys, rounds)
    rows = [order[r * n : (r + 1) * n] for r in range(rounds)]
    assert all(sorted(row) == keys for row in rows)
    positions = Counter((k, i) for row in rows for i, k in enumerate(row))
    after = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert len(positions) == n * n and len(set(positions.values())) == 1
    assert len(after) == n * (n - 1) and len(set(after.values())) == 1
    assert interleaved(keys, 3)[: 2 * n] == order[: 2 * n]  # a prefix of the same design


def test_groups_declare_their_halo():
    """Tiling sums what the folded blocks declare; it agrees with the config's formula."""
    from seemore_sr.models.folded import fold

    for cfg in (config_for("seemore-tiny-x2"), SeemoReConfig(**SMALL, global_kernel_size=21)):
        net = fold(SeemoRe(cfg))
        assert all(g.halo == group_halo(cfg) for g in net.groups)
        assert net.groups[0].rme.halo == 3 and net.groups[0].sme.halo == cfg.global_kernel_size // 2 + 1
