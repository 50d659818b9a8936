import json

import numpy as np
import pytest
from PIL import Image

from seemore_sr import bundled_weights, load_model
from seemore_sr.cli import main
from seemore_sr.evaluation.evaluate import evaluate, paper_numbers
from seemore_sr.inference.upscaler import Upscaler

from .conftest import BENCH, ROOT, load_script


def test_bundled_weights_ship_with_provenance():
    assert set(bundled_weights()) == {
        "seemore-tiny-x2", "seemore-tiny-x3", "seemore-tiny-x4", "seemore-tiny-x2-real", "seemore-tiny-x4-real"
    }  # fmt: skip
    for name in bundled_weights():
        model = load_model(name)
        assert model.config.scale == int(name.removesuffix("-real")[-1]) and model.config.embedding_dim == 36
        assert model.provenance["iterations"] > 0 and "train" in model.provenance["dataset"]


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bundled_weights_beat_bicubic_on_set5(scale):
    """The shipping floor: at least +1.5 dB over bicubic on Set5."""
    (res,) = evaluate(Upscaler(f"seemore-tiny-x{scale}", device="cpu"), [BENCH / "Set5"], scale, progress=False)
    assert res.summary()["psnr"] >= paper_numbers("Bicubic", scale)["set5"]["psnr"] + 1.5


def test_main_job_upscales_the_sample(tmp_path):
    sample = ROOT / "src" / "seemore_sr" / "assets" / "sample.png"
    assert main(["upscale", str(sample), "-o", str(tmp_path), "--no-progress"]) == 0
    w, h = Image.open(sample).size
    out = Image.open(tmp_path / "sample.png")
    assert out.size == (4 * w, 4 * h)
    assert np.asarray(out).std() > 10  # a picture, not a blank


def test_readme_numbers_come_from_results():
    """The README's weights table shows what campaign/results/bundled-x*.json (``seemore eval``) measured."""
    readme = (ROOT / "README.md").read_text()
    for scale in (2, 3, 4):
        table = json.loads((ROOT / "campaign" / "results" / f"bundled-x{scale}.json").read_text())
        assert table["Set5"]["images"] == 5 and table["B100"]["images"] == 100
        for name in ("Set5", "Set14", "B100"):
            r = table[name]
            assert f"| x{scale} | {name} | {r['psnr']:.2f} / {r['ssim']:.4f} |" in readme, (scale, name)


def test_readme_rim_table_comes_from_results():
    """docs/usage.md's rim and ``--mirror`` table is what scripts/rim_table.py makes of campaign/results."""
    readme = (ROOT / "docs" / "usage.md").read_text()
    for row in load_script("rim_table").rows():
        assert row in readme, row


def test_readme_real_photo_blocks_come_from_results():
    """The README's preset table and routing sentence are what scripts/real_weights.py makes
    of campaign/results (presets-x*.json, routing-x*.json): remade when the weights ship."""
    import re

    readme = (ROOT / "README.md").read_text()
    rw = load_script("real_weights")
    for name, make in rw.MARKERS.items():
        block = re.search(rf"<!-- {name} -->(.*?)<!-- /{name} -->", readme, re.S)
        assert block is not None, name
        assert block.group(1).strip() == make().strip(), (
            f"README's {name} block is stale: python scripts/real_weights.py readme"
        )


def test_the_real_weights_ship_beside_the_clean_ones():
    from seemore_sr import bundled_weights, load_model

    shipped = bundled_weights()
    for scale in (2, 4):
        name = f"seemore-tiny-x{scale}-real"
        assert name in shipped and f"seemore-tiny-x{scale}" in shipped
        real, clean = load_model(name), load_model(f"seemore-tiny-x{scale}")
        assert real.config == clean.config
        differ = [k for k, v in real.state_dict().items() if not v.equal(clean.state_dict()[k])]
        assert len(differ) > 10  # trained apart, not a copy


def test_a_real_run_that_scores_lower_is_not_shipped(tmp_path, monkeypatch, capsys):
    rw = load_script("real_weights")
    entry = lambda v: {p: {d: v for d in rw.DATASETS} for p in rw.TABLE_PRESETS}  # noqa: E731
    presets = tmp_path / "presets-x{scale}.json"
    (tmp_path / "presets-x4.json").write_text(
        json.dumps({"x4": {"real": entry(25.0), "seemore-tiny-x4": entry(24.0), "seemore-tiny-x4-real": entry(25.1)}})
    )
    monkeypatch.setattr(rw, "PRESETS_JSON", presets)
    for name in ("LEDGER", "WEIGHTS", "ROUTING_JSON"):  # a shipped run would write here
        monkeypatch.setattr(rw, name, tmp_path / "untouched" / name)
    run = tmp_path / "run"
    run.mkdir()
    assert rw.ship(4, run, force=False) is False
    assert "25.000 (the run) against 25.100 (bundled)" in capsys.readouterr().out
    assert not (tmp_path / "untouched").exists()
