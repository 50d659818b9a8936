import csv
import json

import pytest
import torch
from PIL import Image

from seemore_sr import create_model, save_model
from seemore_sr.cli import main
from seemore_sr.evaluation.evaluate import paper_numbers

from .conftest import BENCH, ROOT, SHARED


def test_eval_cli_outputs(tmp_path, capsys, random_images):
    torch.manual_seed(0)
    model = tmp_path / "m.safetensors"
    save_model(create_model("seemore-tiny-x3", num_layers=1, embedding_dim=8), model)
    data = tmp_path / "Mini" / "HR"
    random_images(data, 2, size=(47, 50))
    random_images(data, size=(47, 50), mode="L", name="gray.png")
    js, cs, imgs = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "imgs"
    args = ["eval", str(model), "--data", str(tmp_path / "Mini"), "--scale", "3", "--no-progress"]
    rc = main([*args, "--json", str(js), "--csv", str(cs), "--save-images", str(imgs)])
    assert rc == 0
    out = json.loads(js.read_text())
    assert out["Mini"]["images"] == 3 and 0 < out["Mini"]["psnr"] < 60
    rows = list(csv.DictReader(cs.open()))
    assert rows[0]["dataset"] == "Mini" and rows[0]["images"] == "3"
    assert Image.open(imgs / "Mini" / "gray.png").mode == "L"  # gray stays gray
    assert Image.open(imgs / "Mini" / "0.png").size == (45, 48)  # cropped to a multiple of 3
    # an image too small for the protocol is a per-file error, not a NaN for the whole set
    random_images(data, size=(5, 5), name="tiny.png")
    assert main([*args, "--json", str(js)]) == 1
    assert "tiny.png" in capsys.readouterr().err and "too small to evaluate" not in js.read_text()
    out2 = json.loads(js.read_text())
    assert out2["Mini"]["images"] == 3 and out2["Mini"]["psnr"] == pytest.approx(out["Mini"]["psnr"])
    # a wrong scale is refused before any work
    assert main(["eval", str(model), "--data", str(tmp_path / "Mini"), "--scale", "2", "--no-progress"]) == 2
    assert "x3 model" in capsys.readouterr().err


@pytest.mark.shared
@pytest.mark.slow
def test_eval_bicubic_compare_paper(capsys, tmp_path):
    """Bicubic x2 on Set5 through the CLI reproduces the paper's row (x3 and x4: test_imresize_metrics)."""
    args = ["eval", "bicubic", "--data", str(BENCH / "Set5"), "--scale", "2", "--compare-paper", "--no-progress"]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "33.673" in out and "33.66" in out
    got, paper = json.loads((tmp_path / "r.json").read_text())["Set5"], paper_numbers("Bicubic", 2)["set5"]
    assert got["images"] == 5 and abs(got["psnr"] - paper["psnr"]) <= 0.02 and abs(got["ssim"] - paper["ssim"]) <= 0.002


@pytest.mark.shared
def test_paper_table_ships_with_the_package():
    from seemore_sr.evaluation.evaluate import PAPER_CSV

    assert PAPER_CSV.is_relative_to(ROOT / "src" / "seemore_sr")
    assert PAPER_CSV.read_text() == (SHARED / "reference" / "paper_results.csv").read_text()
    assert paper_numbers("SeemoRe-T", 4)["set5"] == {"psnr": 32.31, "ssim": 0.8965}
