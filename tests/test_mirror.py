"""``mirror``: pixels mirrored around the image against the border rim."""

from pathlib import Path

import numpy as np
import pytest
import torch

from seemore_sr import load_model
from seemore_sr.cli import main
from seemore_sr.errors import OptionError
from seemore_sr.inference.engine import Engine, mirror_pad
from seemore_sr.inference.upscaler import Upscaler

from .conftest import GOLDEN

RIM_WEIGHTS = Path(__file__).parent / "fixtures" / "tiny-x4-rim44.safetensors"


def _drift(up: Upscaler, rgb, side: int = 48, band: int = 12) -> tuple[int, int]:
    """(border, interior) drift of a flat colour, in levels (as scripts/border_rim.py)."""
    lr = np.empty((side, side, 3), np.uint8)
    lr[:] = rgb
    diff = np.abs(up(lr).astype(int) - np.array(rgb)).max(-1)
    inner = diff[band:-band, band:-band].max()
    diff[band:-band, band:-band] = 0
    return int(diff.max()), int(inner)


def test_mirror_removes_a_rim():
    # x4 weights shipped before the flat-patch training: the rim the option exists for, 44
    # levels in blue at the border. The shipped weights' own rim has since been trained
    # away, so they cannot show that the option removes one.
    blue = (0, 0, 255)
    plain = _drift(Upscaler(RIM_WEIGHTS, device="cpu", tile=0, mirror=0), blue)
    assert plain[0] > 30
    for mirror in ("auto", 4):  # auto, the default: a flat image is flat on every side
        up = Upscaler(RIM_WEIGHTS, device="cpu", tile=0, mirror=mirror)
        assert up.engine.mirror == mirror
        border, interior = _drift(up, blue)
        assert border <= 4 and interior <= 4


def test_the_bundled_weights_keep_flat_colours_flat():
    up = Upscaler("seemore-tiny-x4", device="cpu", tile=0)
    assert up.engine.mirror == "auto"  # the default
    for rgb in ((255, 0, 0), (0, 0, 255)):  # the worst colours of earlier x4 weights
        border, interior = _drift(up, rgb)
        assert border <= 4 and interior <= 4, rgb
    assert Upscaler("seemore-tiny-x2", device="cpu").engine.mirror == "auto"


@pytest.mark.shared
def test_auto_mirrors_the_flat_sides_only():
    model = load_model(GOLDEN / "tiny_x4.safetensors")
    eng = Engine(model, device="cpu")  # mirror="auto"
    x = torch.rand(1, 3, 40, 44)
    assert eng.frame(x) == (0, 0, 0, 0)  # a textured image: the network as the authors' code runs it
    with torch.no_grad():
        plain = model(x).clamp(0, 1)
    assert torch.equal(eng.run(x, tile=0), Engine(model, device="cpu", mirror=0).run(x, tile=0))
    assert (eng.run(x, tile=0) - plain).abs().max() <= 1e-5
    x[..., :, :6] = torch.tensor([0.9, 0.1, 0.8])[:, None, None]  # a flat band on the left
    x[..., :, :6] += 0.004 * torch.rand(1, 3, 40, 6)  # within tolerance: noise of about a level
    assert eng.frame(x) == (0, 0, 4, 0)
    with torch.no_grad():
        want = model(mirror_pad(x, (0, 0, 4, 0))).clamp(0, 1)[..., :, 16:]
    assert (eng.run(x, tile=0) - want).abs().max() <= 1e-5
    assert (eng.run(x, tile=16) - want).abs().max() <= 1e-4  # tiled: the same frame
    x[0, :, 10, 2] = 0.2  # one pixel in 160 off: still flat (90% of the band is enough)
    assert eng.frame(x)[2] == 4
    x[0, :, :, 3] = 0.2  # a line along the side: a quarter of the band off, not flat
    assert eng.frame(x) == (0, 0, 0, 0)


@pytest.mark.shared
def test_mirror_is_the_network_on_the_mirrored_image_cropped():
    model = load_model(GOLDEN / "tiny_x4.safetensors")
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        want = model(mirror_pad(x, 4)).clamp(0, 1)[..., 16:-16, 16:-16]
        plain = model(x).clamp(0, 1)
    eng = Engine(model, device="cpu", mirror=4)
    y = eng.run(x, tile=0)
    assert y.shape == (1, 3, 37 * 4, 45 * 4)
    assert (y - want).abs().max() <= 1e-5
    assert (y - plain).abs().max() > 1e-3  # the frame changes the border: the test can tell
    assert (Engine(model, device="cpu", mirror=0).run(x, tile=0) - plain).abs().max() <= 1e-5
    tiled = eng.run(x, tile=16)  # tiles of the mirrored image, cropped: the same output
    assert eng.tiled(37, 45, 16) and (tiled - y).abs().max() <= 1e-4
    out = torch.full_like(y, -1.0)

    def sink(box, t):
        assert t.shape[-2:] == (box[1] - box[0], box[3] - box[2])
        assert 0 <= box[0] < box[1] <= 37 * 4 and 0 <= box[2] < box[3] <= 45 * 4
        out[..., box[0] : box[1], box[2] : box[3]] = t

    assert eng.run(x, tile=16, sink=sink) is None
    assert (out - y).abs().max() <= 1e-4  # every output pixel written, in the image's own coordinates
    steps = []
    eng.run(x, tile=16, progress=lambda d, n: steps.append((d, n)))
    assert steps[-1][0] == steps[-1][1] == eng.steps(37, 45, 16)


def test_mirror_on_images_thinner_than_the_frame(small_model):
    up = Upscaler(small_model, device="cpu", tile=0, mirror=4)
    for shape in [(1, 30, 3), (3, 2, 3), (20, 1)]:  # too thin to mirror: the edge is repeated
        a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        y = up(a)
        assert y.shape[:2] == (shape[0] * 2, shape[1] * 2) and y.dtype == np.uint8
    flat = np.full((2, 40, 3), 200, np.uint8)
    assert mirror_pad(torch.from_numpy(flat).permute(2, 0, 1)[None].float(), 4).shape[-2:] == (10, 48)


@pytest.mark.parametrize("bad", [-1, 65, 2.5, True, "4", "on"])
def test_mirror_rejects_bad_values(small_model, bad):
    with pytest.raises(OptionError, match="mirror"):
        Engine(small_model, device="cpu", mirror=bad)


def test_cli_mirror(tmp_path, small_model, capsys):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(np.full((24, 24, 3), (255, 0, 255), np.uint8)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(small_model), "--mirror", "4"]) == 0
    assert Image.open(tmp_path / "out" / "in.png").size == (48, 48)
    for bad in ("-2", "x"):
        with pytest.raises(SystemExit):  # argparse: a usage error before anything runs
            main(["upscale", str(src), "-o", str(tmp_path / "o2"), "--model", str(small_model), "--mirror", bad])
        err = capsys.readouterr().err
        assert "--mirror" in err and "auto, or pixels" in err and "Traceback" not in err
    assert not (tmp_path / "o2").exists()


def test_a_video_segment_keeps_its_first_frames_choice(small_model):
    up = Upscaler(small_model, device="cpu", tile=0)
    flat = np.full((20, 24, 3), (200, 30, 90), np.uint8)
    framed = up.framed_like(flat)
    assert framed.frame == (4, 4, 4, 4) and framed.engine is up.engine and up.frame is None
    busy = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert up.framed_like(busy).frame == (0, 0, 0, 0)
    # a later, textured frame of the flat-started segment keeps the mirror: equal to mirroring it always
    assert np.array_equal(framed(busy), Upscaler(small_model, device="cpu", tile=0, mirror=4)(busy))


def test_mirror_streamed_tiles_give_the_whole_image(small_model):
    a = np.random.default_rng(1).integers(0, 256, (40, 53, 3), dtype=np.uint8)
    whole = Upscaler(small_model, device="cpu", tile=0, mirror=4)(a)
    tiled = Upscaler(small_model, device="cpu", tile=16, mirror=4)
    assert tiled.tiled(40, 53)  # the uint8 path streams the tiles into the output array
    assert np.abs(tiled(a).astype(int) - whole).max() <= 1
    assert np.abs(Upscaler(small_model, device="cpu", tile=0)(a).astype(int) - whole).max() > 1
