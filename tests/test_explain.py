import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from seemore_sr import create_model, load_model
from seemore_sr.analysis.explain import capture, route_images, routing_counts
from seemore_sr.analysis.figures import image_figure, routing_figure
from seemore_sr.cli import main

from .conftest import BENCH, GOLDEN


@pytest.mark.shared
@pytest.mark.parametrize("name", ["tiny_x4", "base_x2"])
def test_golden_routing_reproduced(name):
    t = load_file(GOLDEN / f"{name}.safetensors")
    model = load_model(GOLDEN / f"{name}.safetensors")
    choices = route_images(model, list(t["input"]))
    got = torch.tensor([[layer[0] for layer in img] for img in choices], dtype=torch.int32)
    assert torch.equal(got, t["routing_eval"])
    counts = routing_counts(model, choices)
    want = np.zeros_like(counts)
    for img in t["routing_eval"].tolist():
        for layer, e in enumerate(img):
            want[layer, e] += 1
    assert np.array_equal(counts, want) and counts.sum() == 3 * model.config.num_layers


def test_counts_agree_with_the_models_own_routing_and_topk():
    torch.manual_seed(3)
    model = create_model("seemore-tiny-x2", num_layers=3, topk=2)
    images = [torch.rand(3, 20 + 3 * i, 24) for i in range(4)]
    choices = route_images(model, images)
    for img, per_layer in zip(images, choices, strict=True):
        own = []  # the MoE layer's own decision, read at its input

        def read(m, inp, out, own=own):
            own.append(sorted(m.routing(inp[0])[1][0].tolist()))

        hooks = [g.local_block.block.moe_layer.register_forward_hook(read) for g in model.body]
        with torch.no_grad():
            model(img[None])
        for h in hooks:
            h.remove()
        assert [sorted(e) for e in per_layer] == own
    assert routing_counts(model, choices).sum() == 4 * 3 * 2  # images x layers x topk


@pytest.mark.shared
def test_capture_and_figures(tmp_path):
    model = load_model(GOLDEN / "tiny_x4.safetensors")
    lr = np.asarray(Image.open(BENCH / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB"))
    cap = capture(model, lr, group=2)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks removed
    h, w = lr.shape[:2]
    assert cap.output.shape == (3, 4 * h, 4 * w) and cap.before.shape == (36, h, w)
    for layer, experts in enumerate(cap.experts):
        assert cap.lowrank[layer].shape == (cap.ranks[experts[0]], h, w)  # the chosen expert's rank
    with torch.no_grad():
        ref = model(torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None])[0].clamp(0, 1)
    assert torch.allclose(cap.output, ref)  # hooks change nothing
    assert not torch.equal(cap.after_more, cap.before) and not torch.equal(cap.after_see, cap.after_more)
    fig = image_figure(cap, tmp_path / "one.png")
    with Image.open(fig) as im:
        assert im.format == "PNG" and im.size == (int(2.6 * 6 * 90), int(8.4 * 90))
    counts = routing_counts(model, route_images(model, [lr]))
    fig = routing_figure(counts, cap.ranks, tmp_path / "r.png", "t")
    with Image.open(fig) as im:
        assert im.format == "PNG" and im.size == (int((1.2 + 0.9 * 6) * 110), int(4.2 * 110))


@pytest.mark.shared
def test_explain_cli(tmp_path, capsys, random_images):
    data = tmp_path / "set" / "HR"
    random_images(data, 3, size=(36, 40))
    random_images(data, size=(36, 40), mode="L", name="gray.png")
    (img,) = random_images(tmp_path, size=(30, 24), name="photo.png")
    out = tmp_path / "out"
    model = str(GOLDEN / "tiny_x4.safetensors")
    assert main(["explain", model, str(img), "--data", str(tmp_path / "set"), "--out", str(out)]) == 0
    report = json.loads((out / "routing.json").read_text())
    assert report["total"]["images"] == 4 and report["ranks"] == [2, 4, 8]
    assert np.array(report["total"]["counts"]).sum(1).tolist() == [4] * 6
    assert len(report["per_image"]) == 4
    firsts = [layers[0][0] for layers in report["per_image"].values()]  # experts numbered from 1, as the figure
    assert all(1 <= e <= 3 for e in firsts) and "from 1" in report["numbering"]
    photo = json.loads((out / "photo_explain.json").read_text())
    assert all(1 <= e <= 3 for layer in photo["experts"] for e in layer)
    assert (out / "routing.png").exists() and (out / "routing.csv").exists() and (out / "photo_explain.png").exists()
    assert "layer 1:" in capsys.readouterr().out
    assert main(["explain", model]) == 2
    assert "give one or more IMAGE" in capsys.readouterr().err
    assert main(["explain", model, str(img), "--scale", "2", "--out", str(out)]) == 2
    assert "x4 model" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["explain", model, str(tmp_path / "bad.png"), "--out", str(out)]) == 1
    assert "failed:" in capsys.readouterr().err
