"""seemore upscale's batch rules: one bad file never stops a batch, outputs are
checked before compute, nothing is lost or silently changed. A stand-in upscaler (2x
nearest) keeps these fast; the real network's paths are in test_upscale.py."""

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from seemore_sr.cli import main
from seemore_sr.inference.batch import collect_inputs, upscale_files

from .conftest import write_image


class Twice:
    def __init__(self, fail_on=None, during=None):
        self.calls, self.fail_on, self.during = [], fail_on, during

    def __call__(self, im):
        self.calls.append(im.size)
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise MemoryError
        if self.during:
            self.during()
        return im.resize((im.width * 2, im.height * 2), Image.NEAREST)


def png(path, size=(12, 10), mode="RGB"):
    return write_image(path, size, mode)


def bomb(path, w=100_000, h=100_000):
    """A valid PNG whose header claims w x h pixels."""
    png(path, (4, 4))
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", w, h)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_recursive_scan_mirrors_the_tree(tmp_path):
    png(tmp_path / "in" / "a" / "x.png")
    png(tmp_path / "in" / "b" / "x.png", (8, 8))
    files, missing, subdirs = collect_inputs([str(tmp_path / "in")], recursive=True)
    s = upscale_files(Twice(), files, tmp_path / "out", progress=False, existing="overwrite", subdirs=subdirs)
    assert len(s.done) == 2 and not missing
    assert Image.open(tmp_path / "out" / "a" / "x.png").size == (24, 20)
    assert Image.open(tmp_path / "out" / "b" / "x.png").size == (16, 16)


def test_bomb_and_pixel_limit_do_not_stop_the_batch(tmp_path):
    files = [bomb(tmp_path / "bomb.png"), png(tmp_path / "big.png", (40, 40)), png(tmp_path / "good.png")]
    up = Twice()
    s = upscale_files(up, files, tmp_path / "out", progress=False, max_pixels=1000)
    failed = dict(s.failed)
    assert "pixel limit" in failed[str(files[0])] and "pixel limit" in failed[str(files[1])]
    assert [p.name for p in s.done] == ["good.png"] and up.calls == [(12, 10)]
    s = upscale_files(Twice(), files[1:2], tmp_path / "out2", progress=False, max_pixels=2000)  # raised: fine
    assert len(s.done) == 1


def test_memory_error_and_forged_names_are_one_line(tmp_path, capsys):
    odd = tmp_path / "a\nfailed: forged.png"
    odd.write_bytes(b"not an image")
    files = [png(tmp_path / "1.png"), odd, png(tmp_path / "2.png")]
    lines = []
    s = upscale_files(Twice(fail_on=1), files, tmp_path / "out", progress=False, log=lines.append)
    assert "out of memory" in dict(s.failed)[str(files[0])] and [p.name for p in s.done] == ["2.png"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert not any(line.startswith("failed: forged") for line in "\n".join(lines).splitlines())


def test_output_checked_before_compute(tmp_path, capsys):
    rgba = png(tmp_path / "rgba.png", mode="RGBA")
    up = Twice()
    s = upscale_files(up, [rgba], tmp_path / "out", fmt="jpg", progress=False)
    assert "JPEG cannot hold an alpha" in s.failed[0][1] and up.calls == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        upscale_files(up, [rgba], tmp_path / "file", progress=False)
    assert main(["upscale", str(rgba), "-o", str(tmp_path / "file"), "--model", "seemore-tiny-x2"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_unwritable_output_folder_refused_before_compute(tmp_path, monkeypatch):
    """As root every folder is writable, so the check is driven through os.access: what an
    ordinary user sees for a read-only -o."""
    rgb = png(tmp_path / "in.png")
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("ro") else real(p, mode))
    up = Twice()
    with pytest.raises(ValueError, match="not writable"):
        upscale_files(up, [rgb], tmp_path / "ro", progress=False)
    assert up.calls == [] and not list((tmp_path / "ro").iterdir())


def test_gif_bmp_and_animation(tmp_path):
    frames = [Image.new("RGB", (10, 8), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (10, 8), "red").save(tmp_path / "still.gif")
    Image.new("RGB", (10, 8), "blue").save(tmp_path / "pic.bmp")
    files, _, _ = collect_inputs([str(tmp_path)])
    assert {f.name for f in files} == {"anim.gif", "still.gif", "pic.bmp"}  # nothing skipped silently
    s = upscale_files(Twice(), files, tmp_path / "out", progress=False)
    assert "animated image (3 frames)" in dict(s.failed)[str(tmp_path / "anim.gif")]
    assert sorted(p.name for p in s.done) == ["pic.png", "still.png"]


def test_icc_profile_only_when_it_matches(tmp_path):
    cmyk_icc = b"\0" * 16 + b"CMYK" + b"\0" * 108
    rgb_icc = b"\0" * 16 + b"RGB " + b"\0" * 108
    Image.new("CMYK", (10, 8), (0, 50, 100, 0)).save(tmp_path / "c.jpg", icc_profile=cmyk_icc)
    Image.new("RGB", (10, 8), "red").save(tmp_path / "r.jpg", icc_profile=rgb_icc)

    class ToRGB(Twice):
        def __call__(self, im):
            return super().__call__(im.convert("RGB"))

    s = upscale_files(ToRGB(), [tmp_path / "c.jpg", tmp_path / "r.jpg"], tmp_path / "out", progress=False)
    assert len(s.done) == 2
    assert "icc_profile" not in Image.open(tmp_path / "out" / "c.jpg").info  # RGB pixels, CMYK profile: dropped
    assert Image.open(tmp_path / "out" / "r.jpg").info["icc_profile"] == rgb_icc


def test_stale_parts_removed_and_concurrent_writers_do_not_clobber(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".x.png.{dead.stdout.strip()}.abc123.part"
    live = out / f".y.png.{os.getppid()}.abc123.part"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    src = png(tmp_path / "x.png")

    def other_run_wins():
        (out / "x.png").write_bytes(b"the other run's output")

    s = upscale_files(Twice(during=other_run_wins), [src], out, progress=False)
    assert not stale.exists() and live.exists()
    assert "another run" in s.failed[0][1] and not s.done
    assert (out / "x.png").read_bytes() == b"the other run's output"
    assert not list(out.glob(f".x.png.{os.getpid()}.*.part"))  # our temporary file is gone too


def test_16_bit_colour_png_keeps_its_depth(tmp_path):
    """Pillow reads 16-bit RGB PNGs as 8 bits; they come out 16-bit, equal to the array API's
    result, with their ICC profile and DPI, and a format that cannot hold them is refused first."""
    import png as pypng
    import torch

    from seemore_sr import create_model
    from seemore_sr.inference.batch import _png16_bytes
    from seemore_sr.inference.upscaler import Upscaler

    rng = np.random.default_rng(0)
    rgb_icc = b"\0" * 16 + b"RGB " + b"\0" * 108
    srcs = {}
    for c in (3, 4):
        a = rng.integers(0, 65536, (10, 12, c), dtype=np.uint16)
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"c{c}.png").write_bytes(_png16_bytes(a, {"icc_profile": rgb_icc, "dpi": (300, 300)}))
        srcs[c] = a
    assert Image.open(tmp_path / "in" / "c3.png").mode == "RGB"  # what Pillow alone would give: 8 bits
    torch.manual_seed(0)
    up = Upscaler(create_model("seemore-tiny-x2", num_layers=1, embedding_dim=8), device="cpu", tile=0)
    summary = upscale_files(up, sorted((tmp_path / "in").iterdir()), tmp_path / "out", progress=False)
    assert not summary.failed
    for c, a in srcs.items():
        w, h, rows, info = pypng.Reader(filename=str(tmp_path / "out" / f"c{c}.png")).asDirect()
        got = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, c)
        assert info["bitdepth"] == 16 and (w, h) == (24, 20)
        assert np.array_equal(got, up(a))
        assert len(np.unique(got & 0xFF)) > 64  # the low byte is real, not a copy of the high one
        with Image.open(tmp_path / "out" / f"c{c}.png") as im:
            assert im.info["icc_profile"] == rgb_icc and round(im.info["dpi"][0]) == 300
    summary = upscale_files(up, [tmp_path / "in" / "c3.png"], tmp_path / "jpg", fmt="jpg", progress=False)
    assert "only PNG keeps its depth" in summary.failed[0][1]
    assert not (tmp_path / "jpg").exists()  # nothing written: the folder the run made is gone
