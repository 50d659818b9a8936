import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from seemore_sr import load_model
from seemore_sr.cli import main
from seemore_sr.evaluation.metrics import psnr
from seemore_sr.inference.tiling import tile_steps, tiled_forward
from seemore_sr.inference.upscaler import Upscaler, upscale

from .conftest import BENCH, GOLDEN, write_image


@pytest.fixture(scope="module")
def up(small_model):
    return Upscaler(small_model, device="cpu", tile=0)


@pytest.mark.shared
def test_tiled_equals_untiled_on_real_photo():
    model = load_model(GOLDEN / "tiny_x4.safetensors")  # the authors' architecture, every weight active
    img = np.asarray(Image.open(BENCH / "B100" / "HR" / sorted(os.listdir(BENCH / "B100" / "HR"))[0]))[:96, :120]
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        whole = model(x).clamp(0, 1)
    tiled = tiled_forward(model, x, tile=32).clamp(0, 1)
    q = lambda t: (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    a, b = q(whole), q(tiled)
    assert np.abs(a.astype(int) - b).max() <= 2
    assert psnr(a, b) >= 50
    assert (tiled - whole).abs().max() <= 1e-4
    naive = torch.cat([model(x[..., :, :64]), model(x[..., :, 64:])], -1).clamp(0, 1)  # per-tile routing
    assert (naive - whole).abs().max() > (tiled - whole).abs().max()  # the test can tell the difference


@pytest.mark.shared
def test_tiles_spill_to_disk_and_odd_sizes_stay_exact():
    model = load_model(GOLDEN / "tiny_x4.safetensors")
    x = torch.rand(1, 3, 45, 70)  # sides not multiples of the 16-pixel pooling
    with torch.no_grad():
        whole = model(x)
    for tile, spill in [(20, True), (16, False), (33, None)]:  # 20 and 33 round up to 32, 48
        assert (tiled_forward(model, x, tile, spill=spill) - whole).abs().max() <= 1e-4
    boxes, ticks = [], []
    sink = lambda box, t: boxes.append((box, tuple(t.shape[-2:])))  # noqa: E731
    assert tiled_forward(model, x, 16, lambda: ticks.append(1), sink=sink) is None
    assert len(ticks) == tile_steps(model, 45, 70, 16) == 3 * 5 * 7  # a tick per tile and pass
    assert sum((b[1] - b[0]) * (b[3] - b[2]) for b, _ in boxes) == 45 * 4 * 70 * 4  # output covered once
    assert all(shape == (b[1] - b[0], b[3] - b[2]) for b, shape in boxes)


def test_streamed_tiles_give_the_untiled_image(small_model):
    rng = np.random.default_rng(0)
    whole, tiled = Upscaler(small_model, device="cpu", tile=0), Upscaler(small_model, device="cpu", tile=16)
    for arr in [
        rng.integers(0, 256, (40, 52, 3), dtype=np.uint8),
        rng.integers(0, 65536, (40, 52), dtype=np.uint16),
        rng.integers(0, 256, (40, 52, 4), dtype=np.uint8),
    ]:
        a, b = whole(arr), tiled(arr)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.abs(a.astype(np.int64) - b).max() <= 1


# Peak memory is measured in a fresh process (peak RSS is per process) with a fixed malloc mmap
# threshold. glibc raises its threshold as large blocks are freed and then keeps freed tiles in
# its heap, so STRIP's tiled peak varied 520-602 MB in 5 runs (CI failed once at 601 against 677
# whole). With the threshold fixed every large block goes back, and the peak is the run's own
# working set: 251-252 MB against 667-669 MB whole in 2 runs (Intel Xeon model 167).
PEAK_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
HWM = """
def hwm():  # peak RSS so far, MB
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024
"""


def measure(script: str, *args: str) -> list[int]:
    """The integers ``script`` (with :data:`HWM`) prints, run with ``args`` under :data:`PEAK_ENV`."""
    out = subprocess.run([sys.executable, "-c", HWM + script, *args], capture_output=True, text=True, env=PEAK_ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    return [int(v) for v in out.stdout.split()]


PEAK = """
import sys, torch
from seemore_sr import create_model
from seemore_sr.inference.tiling import tile_steps, tiled_forward
torch.manual_seed(0)
model = create_model('seemore-tiny-x2', num_layers=1, embedding_dim=32).eval()
side, spill = int(sys.argv[1]), sys.argv[2] == 'disk'
x = torch.rand(1, 3, side, side)
tiled_forward(model, torch.rand(1, 3, 64, 64), 64, sink=lambda b, t: None)  # warm-up
base = hwm()
tiled_forward(model, x, 64, sink=lambda b, t: None, spill=spill)
print(hwm() - base)
"""


@pytest.mark.slow
def test_tiled_memory_grows_with_the_tile_not_the_image():
    def peak(side, where):
        return measure(PEAK, str(side), where)[-1]

    # 16x the pixels; in RAM the two 32-channel feature maps of a 640x640 input take 105 MB
    big_disk = peak(640, "disk")
    assert peak(640, "ram") - big_disk > 70  # the measurement can see the maps
    assert big_disk - peak(160, "disk") < 20  # input tensor (5 MB) and allocator slack only (measured: -2)


def test_api_kinds_and_dtypes(up):
    rng = np.random.default_rng(0)
    for arr in [
        rng.integers(0, 256, (20, 24), dtype=np.uint8),
        rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
        rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16),
        rng.random((20, 24, 4)).astype(np.float32),
    ]:
        out = up(arr)
        assert out.dtype == arr.dtype and out.shape[:2] == (40, 48) and out.shape[2:] == arr.shape[2:]
    t = torch.rand(2, 3, 20, 24)
    assert up(t).shape == (2, 3, 40, 48) and up(t[0]).shape == (3, 40, 48)
    assert 0 <= up(t).min() and up(t).max() <= 1
    with pytest.raises(ValueError, match="C in 1"):
        up(np.zeros((8, 8, 5), np.uint8))


def test_gray_alpha_palette_16bit(up):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    assert up(rgb.convert("L")).mode == "L"
    rgba = rgb.copy()
    alpha = np.zeros((20, 24), np.uint8)
    alpha[5:15, 6:18] = 255
    rgba.putalpha(Image.fromarray(alpha))
    out = up(rgba)
    assert out.mode == "RGBA" and out.size == (48, 40)
    a = np.asarray(out)[..., 3]
    assert a[0, 0] == 0 and a[20, 24] == 255  # alpha resized, not run through the network
    opaque = rgb.copy()
    opaque.putalpha(255)
    assert up(opaque).mode == "RGB"  # fully opaque alpha dropped
    assert up(rgb.convert("P")).mode == "RGB"
    deep = Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16))
    out = up(deep)
    assert np.asarray(out).dtype == np.uint16 and out.size == (48, 40)


def test_outscale(small_model):
    u = Upscaler(small_model, device="cpu", outscale=1.5)
    assert u(np.zeros((20, 24, 3), np.uint8)).shape == (30, 36, 3)


def test_fp16_overflow_falls_back_to_fp32(small_model, monkeypatch):
    img = np.random.default_rng(3).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    inf_under_amp = lambda y: y * float("inf") if torch.is_autocast_enabled("cpu") else y  # noqa: E731
    # whole image: the fast module overflows under fp16 autocast
    up = Upscaler(small_model, device="cpu", tile=0)
    ref = up(img)
    up.engine.dtype = torch.float16  # as on a GPU; on the CPU the constructor refuses fp16
    real = up.fast
    up.engine.fast = lambda x: inf_under_amp(real(x))
    with pytest.warns(UserWarning, match="overflowed"):
        assert np.array_equal(up(img), ref)
    # streamed tiles: the first non-finite tile stops the fp16 run, the fp32 rerun fills the image
    up = Upscaler(small_model, device="cpu", tile=16)
    ref = up(img)
    up.engine.dtype = torch.float16
    tail = up.fast.tail
    monkeypatch.setattr(up.fast, "tail", lambda f, r: inf_under_amp(tail(f, r)))
    with pytest.warns(UserWarning, match="overflowed"):
        assert np.array_equal(up(img), ref)


@pytest.mark.shared
def test_bf16_runs_under_autocast_close_to_fp32():
    img = np.asarray(Image.open(BENCH / "Set5" / "HR" / sorted(os.listdir(BENCH / "Set5" / "HR"))[0]))[:48, :64]
    a = Upscaler("seemore-tiny-x2", device="cpu", tile=0)(img)
    b = Upscaler("seemore-tiny-x2", device="cpu", tile=0, precision="bf16", force_precision=True)(img)
    diff = np.abs(a.astype(int) - b)
    assert 0 < diff.max() <= 8 and diff.mean() < 1  # reduced precision really ran, and stays close


def test_fp16_refused_on_cpu(small_model):
    with pytest.raises(ValueError, match="fp16"):
        Upscaler(small_model, device="cpu", precision="fp16")


def test_upscale_function(small_model):
    out = upscale(Image.new("RGB", (10, 12)), model=small_model, device="cpu")
    assert out.size == (20, 24)


def make_inputs(d):
    write_image(d / "a.png", (20, 16))
    im = Image.open(write_image(d / "b.jpg", (20, 16), seed=1))
    im.load()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(d / "b.jpg", exif=exif, dpi=(300, 300), icc_profile=icc)
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    data = (d / "a.png").read_bytes()
    (d / "trunc.png").write_bytes(data[: len(data) // 2])
    return d


def test_cli_batch_with_failures(tmp_path, small_model, capsys):
    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc = main(
        [
            "upscale",
            str(src),
            str(tmp_path / "missing.png"),
            "-o",
            str(out),
            "--model",
            str(small_model),
            "--no-progress",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    for name in ("empty.png", "text.png", "trunc.png", "missing.png"):
        assert name in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]  # only whole files
    mask = os.umask(0)
    os.umask(mask)
    assert (out / "a.png").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    b = Image.open(out / "b.jpg")
    assert b.size == (32, 40)  # EXIF orientation applied: 20x16 shown as 16x20, upscaled x2
    assert round(b.info["dpi"][0]) == 300
    assert b.info["icc_profile"] == Image.open(src / "b.jpg").info["icc_profile"]  # colour profile kept
    # existing outputs: refused, skipped, or overwritten on request
    assert main(["upscale", str(src / "a.png"), "-o", str(out), "--model", str(small_model), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    assert (
        main(
            [
                "upscale",
                str(src / "a.png"),
                "-o",
                str(out),
                "--model",
                str(small_model),
                "--no-progress",
                "--skip-existing",
            ]
        )
        == 0
    )
    assert "1 skipped" in capsys.readouterr().out
    pattern = str(src / "a.*")
    assert (
        main(
            [
                "upscale",
                pattern,
                "-o",
                str(out),
                "--model",
                str(small_model),
                "--no-progress",
                "--overwrite",
                "--format",
                "webp",
            ]
        )
        == 0
    )
    assert (out / "a.webp").exists()


def test_cli_refuses_to_overwrite_input(tmp_path, small_model, capsys):
    src = make_inputs(tmp_path / "in")
    before = (src / "a.png").read_bytes()
    assert (
        main(
            ["upscale", str(src / "a.png"), "-o", str(src), "--model", str(small_model), "--no-progress", "--overwrite"]
        )
        == 1
    )
    assert "overwrite an input" in capsys.readouterr().err
    assert (src / "a.png").read_bytes() == before


def test_interrupted_run_leaves_no_partial_file(tmp_path, small_model, random_images):
    src = tmp_path / "in"
    random_images(src, 30, size=(48, 48), name="{i:02d}.png")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "seemore_sr",
        "upscale",
        str(src),
        "-o",
        str(out),
        "--model",
        str(small_model),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and len(list(out.glob("*.png"))) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(out.glob("*.png"))
    assert written, "the run should have written some files before the kill"
    for f in written:
        Image.open(f).load()  # every visible output is a whole image
        assert Image.open(f).size == (96, 96)


def test_unavailable_device_is_one_line(tmp_path, small_model, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    wanted = ["cuda"] if not torch.cuda.is_available() else []
    wanted += ["mps"] if not torch.backends.mps.is_available() else []
    for dev in [*wanted, "cdua", "cpu:x"]:
        assert main(["upscale", str(img), "-o", str(tmp_path / "o"), "--model", str(small_model), "--device", dev]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--device {dev}" in err.replace("'", ""), err
    assert not (tmp_path / "o" / "a.png").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("seemore-sr ")


@pytest.mark.shared
def test_tiles_go_by_area():
    from seemore_sr.inference.tiling import tile_count, tile_shape

    assert tile_shape(1, 65536, 256, 16) == (16, 4096)  # a strip: long tiles of 256 x 256 pixels
    assert tile_shape(65536, 1, 256, 16) == (4096, 16)
    assert tile_shape(1000, 1000, 256, 16) == (256, 256)
    assert tile_shape(100, 1000, 256, 16) == (112, 576)
    assert tile_count(1, 65536, 256, 16) == 16 and tile_count(256, 256, 256, 16) == 1
    model = load_model(GOLDEN / "tiny_x4.safetensors")
    x = torch.rand(1, 3, 3, 300)  # thinner than the 16-pixel minimum: padded, then tiled along its length
    with torch.no_grad():
        whole = model(x)
    ticks = []
    tiled = tiled_forward(model, x, 32, lambda: ticks.append(1))
    assert (tiled - whole).abs().max() <= 1e-4
    assert len(ticks) == tile_steps(model, 3, 300, 32) == 5 * 7  # 16 x 64 tiles: 5 of them


STRIP = """
import sys, numpy as np, torch
from seemore_sr import create_model
from seemore_sr.inference.upscaler import Upscaler
torch.manual_seed(0)
up = Upscaler(create_model('seemore-tiny-x2'), device='cpu', tile=sys.argv[1] if sys.argv[1] == 'auto' else 0)
up(np.zeros((16, 16, 3), np.uint8))  # warm-up
base = hwm()
img = np.random.default_rng(0).integers(0, 256, (1, 20000, 3), dtype=np.uint8)
assert up(img).shape == (2, 40000, 3)
print(up.tiled(1, 20000), hwm() - base)
"""


@pytest.mark.slow
def test_a_thin_strip_is_tiled_by_default():
    """1 x 20000 pixels: the network computes 16 rows (its minimum side), 0.32 MP, which whole
    takes most of a GB; the default policy tiles it by area instead."""

    (auto_tile, auto_mb), (_, whole_mb) = measure(STRIP, "auto"), measure(STRIP, "0")
    assert auto_tile == 256
    # tiled: the whole-image maps (92 MB) and a tile's working set; the gap widens with the strip's
    # length (1 x 65536 with the bundled x4 weights: 1009 MB peak against 2168 MB whole, bench_strip.py)
    assert auto_mb < 0.5 * whole_mb, (auto_mb, whole_mb)


def test_bf16_on_a_cpu_without_it_warns_once_and_runs_fp32(small_model, monkeypatch, capsys):
    from seemore_sr import bench
    from seemore_sr.errors import PrecisionFallback
    from seemore_sr.inference import engine

    monkeypatch.setattr(bench, "native_bf16", lambda: False)
    monkeypatch.setattr(engine, "_warned_bf16", False)
    with pytest.warns(PrecisionFallback, match="without native bf16.*fp32 runs instead") as caught:
        up = Upscaler(small_model, device="cpu", precision="bf16")
    assert up.dtype == torch.float32
    assert (caught[0].message.requested, caught[0].message.used) == ("bf16", "fp32")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        assert Upscaler(small_model, device="cpu", precision="bf16").dtype == torch.float32
        assert Upscaler(small_model, device="cpu", precision="bf16", force_precision=True).dtype == torch.bfloat16
    monkeypatch.setattr(bench, "native_bf16", lambda: True)
    assert Upscaler(small_model, device="cpu", precision="bf16").dtype == torch.bfloat16
    assert main(["profile", "seemore-tiny-x2", "--latency", "--input-size", "16", "16", "--repeats", "1"]) == 0
    assert f"cpu         {bench.cpu_description()}" in capsys.readouterr().out


def test_upscaler_and_optimize_leave_the_callers_model_alone(small_model):
    """No surprise mutation: a module handed to Upscaler or optimize keeps its mode and gradients."""
    from seemore_sr import optimize

    model = load_model(small_model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    up = Upscaler(model, device="cpu", tile=16)
    fast = optimize(model)
    x = torch.rand(1, 3, 40, 36)
    y = up(x)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() <= 1e-5 and (y - model(x).clamp(0, 1)).abs().max() <= 1e-5
