import numpy as np
import pytest
import torch
from PIL import Image

from seemore_sr.data.imresize import imresize
from seemore_sr.evaluation.evaluate import evaluate, paper_numbers
from seemore_sr.evaluation.metrics import psnr, psnr_torch, ssim, ssim_torch, to_y

from .conftest import BENCH

SET5 = sorted((BENCH / "Set5" / "HR").glob("*.png"))


@pytest.mark.shared
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("path", SET5, ids=lambda p: p.stem)
def test_matlab_bicubic_bit_exact(path, scale):
    hr = np.array(Image.open(path))
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    lr = imresize(hr[:h, :w], 1 / scale)
    ref = np.array(Image.open(BENCH / "Set5" / "LR_bicubic" / f"X{scale}" / f"{path.stem}x{scale}.png"))
    assert lr.dtype == np.uint8 and lr.shape == ref.shape
    assert np.array_equal(lr, ref)


def test_imresize_float_and_shapes():
    x = np.random.default_rng(0).random((30, 20, 3)).astype(np.float32)
    up = imresize(x, 3.5)
    assert up.shape == (105, 70, 3) and up.dtype == np.float32
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    assert torch.allclose(imresize(t, 3.5)[0].permute(1, 2, 0), torch.from_numpy(up), atol=1e-5)
    assert imresize(x, size=(7, 9)).shape == (7, 9, 3)
    assert imresize(x[..., 0], 0.5).shape == (15, 10)
    const = np.full((16, 16), 0.25)
    assert np.allclose(imresize(const, 0.37), 0.25)  # the kernel is normalised
    with pytest.raises(ValueError):
        imresize(x)


def test_metrics_known_values():
    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    b[0, 0] = 8  # one pixel off by 8 on a gray image: mse = 1
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2))
    assert psnr(a, b, crop_border=1) == float("inf")
    rgb = np.full((4, 4, 3), 255, np.uint8)
    assert to_y(rgb)[0, 0] == pytest.approx(235.0)  # BT.601 white
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 255 - img) < 0.5


def test_torch_metrics_agree_with_reference():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 20, hr.shape), 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    p, s = psnr_torch(t(sr), t(hr), 2), ssim_torch(t(sr), t(hr), 2)
    for i in range(2):
        assert abs(p[i].item() - psnr(sr[i], hr[i], 2)) < 1e-6
        assert abs(s[i].item() - ssim(sr[i], hr[i], 2)) < 1e-9
    g = lambda a: torch.from_numpy(a[..., 0]).float()[:, None] / 255  # noqa: E731
    assert abs(psnr_torch(g(sr), g(hr))[0].item() - psnr(sr[0, ..., 0], hr[0, ..., 0])) < 1e-6


@pytest.mark.shared
@pytest.mark.parametrize("scale", [3, 4])  # x2: test_eval_bicubic_compare_paper, through the CLI
@pytest.mark.slow
def test_bicubic_baseline_reproduces_paper_set5(scale):
    (res,) = evaluate("bicubic", [BENCH / "Set5"], scale, progress=False)
    paper = paper_numbers("Bicubic", scale)["set5"]
    s = res.summary()
    assert s["images"] == 5
    assert abs(s["psnr"] - paper["psnr"]) <= 0.02
    assert abs(s["ssim"] - paper["ssim"]) <= 0.002


def test_eval_reports_problems_and_continues(tmp_path, random_images):
    good = tmp_path / "good" / "HR"
    random_images(good, size=(20, 24), name="a.png")
    random_images(good, size=(1, 1), name="tiny.png")  # smaller than the scale
    (good / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty").mkdir()
    msgs = []
    res = evaluate("bicubic", [tmp_path / "good", tmp_path / "empty", tmp_path / "missing"], 2,
                   progress=False, log=msgs.append)  # fmt: skip
    assert res[0].summary()["images"] == 1
    assert any("tiny.png" in m and "too small to evaluate" in m for m in msgs)
    assert any("broken.png" in m for m in msgs)
    assert res[1].errors and "no images" in res[1].errors[0]
    assert res[2].errors and "no such folder" in res[2].errors[0]
