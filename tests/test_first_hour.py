"""A newcomer's first hour: ``-o file``, early errors without litter, extras checked first,
log lines when piped, EXIF kept, notes on what was left out, ``train --threads``."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import write_image


def run(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seemore_sr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def photo(path: Path, size=(24, 20), **save) -> Path:
    return write_image(path, size, **save)


def test_o_with_an_image_extension_writes_that_file(tmp_path, small_model):
    src = photo(tmp_path / "in.png")
    proc = run("upscale", src, "-o", tmp_path / "res" / "result.jpg", "--model", small_model)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "res" / "result.jpg"
    assert out.is_file() and Image.open(out).format == "JPEG" and Image.open(out).size == (48, 40)
    assert "written to" in proc.stdout and str(out) in proc.stdout
    two = run("upscale", src, photo(tmp_path / "b.png"), "-o", tmp_path / "x.png", "--model", small_model)
    assert two.returncode == 2 and "names one file, but 2 inputs" in two.stderr and not (tmp_path / "x.png").exists()
    clash = run("upscale", src, "-o", tmp_path / "y.png", "--format", "jpg", "--model", small_model)
    assert clash.returncode == 2 and "differs from the output file's extension" in clash.stderr
    folder = run("upscale", src, "-o", tmp_path / "plain", "--model", small_model)  # no extension: a folder
    assert folder.returncode == 0 and (tmp_path / "plain" / "in.png").is_file()


def test_missing_inputs_fail_fast_and_leave_no_folder(tmp_path):
    start = time.perf_counter()
    proc = run("upscale", tmp_path / "nope.png", "-o", tmp_path / "out")
    assert proc.returncode == 1 and "nope.png: no such file or folder" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 10  # before torch and the weights load
    bicubic = run("eval", "bicubic", "--data", tmp_path)
    assert bicubic.returncode == 2 and "bicubic needs --scale" in bicubic.stderr
    code = ("import sys\nfrom seemore_sr.cli import main\nr = main(['upscale', 'nope.png', '-o', 'o'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True).returncode == 0


def test_a_run_that_writes_nothing_leaves_no_folder(tmp_path, small_model):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    proc = run("upscale", bad, "-o", tmp_path / "new" / "out", "--model", small_model)
    assert proc.returncode == 1 and "not an image" in proc.stderr
    assert not (tmp_path / "new").exists()


def test_missing_extras_are_named_before_the_work(tmp_path, small_model, monkeypatch):
    from seemore_sr.errors import MissingExtra, require

    with pytest.raises(MissingExtra, match=r"pip install 'seemore-sr\[plot\]'"):
        require("plot", "figures", "surely_not_a_module_xyz")
    require("video", "video", "av")  # installed here: no error
    # the CLI checks before loading the model: a fake module path that hides matplotlib
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "matplotlib.py").write_text("raise ImportError('hidden')\n")
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in ('matplotlib', 'onnx') else real(n, *a)\n"
        "from seemore_sr.cli import main\n"
        f"rc = main(['explain', {str(small_model)!r}, '--data', {str(tmp_path)!r}, '--out', {str(tmp_path / 'e')!r}])\n"
        "assert 'seemore_sr.models.hub' not in sys.modules, 'the model was loaded first'\n"
        f"rc2 = main(['export', {str(small_model)!r}, {str(tmp_path / 'm.onnx')!r}])\n"
        "sys.exit(rc * 10 + rc2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 22, proc.stderr
    assert "pip install 'seemore-sr[plot]'" in proc.stderr and "pip install 'seemore-sr[onnx]'" in proc.stderr


def test_piped_output_gets_a_line_per_file_and_subfolders_are_mentioned(tmp_path, small_model):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    photo(src / "a.png")
    photo(src / "b.png")
    photo(src / "sub" / "c.png")
    proc = run("upscale", src, "-o", tmp_path / "out", "--model", small_model)  # stderr is a pipe here
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("done: ") == 2 and "a.png -> " in proc.stderr
    assert "1 subfolder(s) skipped (use -r to include them)" in proc.stderr
    assert "\r" not in proc.stderr  # no progress bar in a log


def test_eval_prints_no_bar_when_piped(tmp_path):
    hr = tmp_path / "Tiny" / "HR"
    hr.mkdir(parents=True)
    photo(hr / "a.png", size=(48, 48))
    proc = run("eval", "bicubic", "--scale", "2", "--data", hr.parent)
    assert proc.returncode == 0 and "\r" not in proc.stderr and "it/s" not in proc.stderr


def test_jpeg_exif_is_kept_with_the_orientation_applied(tmp_path, small_model):
    src = tmp_path / "cam.jpg"
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x010F], exif[0x0110], exif[0x0132], exif[0x0112] = "Canon", "EOS 5D", "2024:05:01 10:00:00", 6
    im.save(src, exif=exif.tobytes(), quality=95)
    proc = run("upscale", src, "-o", tmp_path / "out", "--model", small_model)
    assert proc.returncode == 0, proc.stderr
    out = Image.open(tmp_path / "out" / "cam.jpg")
    got = out.getexif()
    assert (got[0x010F], got[0x0110], got[0x0132]) == ("Canon", "EOS 5D", "2024:05:01 10:00:00")
    assert got.get(0x0112, 1) == 1 and out.size == (40, 60)  # rotated upright once, not again by viewers


def test_train_has_threads(tmp_path):
    proc = run("train", "--help")
    assert "--threads N" in proc.stdout and "train.threads" in proc.stdout
    from seemore_sr.cli import build_parser

    args = build_parser().parse_args(["train", "cpu", "--run", str(tmp_path), "--threads", "1"])
    assert args.threads == 1


def test_the_tile_bar_total_does_not_jump(small_model, monkeypatch):
    import sys

    import tqdm

    from seemore_sr import Upscaler

    made = []

    class Bar:
        def __init__(self, total, **kwargs):
            self.total, self.n, self.totals = total, 0, [total]
            made.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    flat = np.full((40, 56, 3), 200, np.uint8)  # flat sides: mirror "auto" frames them
    flat[10:30, 10:40] = 30
    Upscaler(str(small_model), tile=16, progress=True)(flat)
    assert len(made) == 1 and made[0].n == made[0].total and made[0].totals == [made[0].total]


def test_a_16_bit_colour_tiff_says_its_depth_was_dropped(tmp_path, small_model):
    import struct

    a = np.random.default_rng(0).integers(0, 65536, (12, 10, 3)).astype("<u2")
    h, w, _ = a.shape
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, 134), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 140),
               (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, a.nbytes), (284, 3, 1, 1)]  # fmt: skip
    raw = b"II*\x00" + struct.pack("<IH", 8, len(entries))  # a baseline uncompressed RGB TIFF, 16 bits a sample
    for tag, typ, count, value in entries:
        raw += (
            struct.pack("<HHIHH", tag, typ, count, value, 0)
            if typ == 3 and count == 1
            else struct.pack("<HHII", tag, typ, count, value)
        )
    raw += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + a.tobytes()
    assert len(raw) == 140 + a.nbytes
    (tmp_path / "deep.tif").write_bytes(raw)
    proc = run("upscale", tmp_path / "deep.tif", "-o", tmp_path / "out", "--model", small_model)
    assert proc.returncode == 0, proc.stderr
    assert "deep.tif: a 16-bit colour TIFF is read at 8 bits a channel" in proc.stderr


def test_the_first_run_says_it_measures_once(tmp_path, small_model):
    import os

    env = {**os.environ, "SEEMORE_CACHE": str(tmp_path / "cache")}
    env.pop("SEEMORE_EXECUTOR", None)
    env.pop("SEEMORE_CALIBRATE", None)
    src = photo(tmp_path / "a.png")
    first = run("upscale", src, "-o", tmp_path / "o1", "--model", small_model, env=env)
    again = run("upscale", src, "-o", tmp_path / "o2", "--model", small_model, env=env)
    assert first.returncode == again.returncode == 0, first.stderr
    assert first.stderr.count("measuring the fastest way to run on this CPU, once") == 1
    assert "measuring" not in again.stderr  # remembered
