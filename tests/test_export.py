import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seemore_sr import load_model
from seemore_sr.cli import main

from .conftest import GOLDEN

ort = pytest.importorskip("onnxruntime")  # installed by .ci/run (the onnx extra)


def test_export_routes_per_image_and_any_size(tmp_path):
    path = GOLDEN / "tiny_x4.safetensors"
    t = load_file(path)
    routing = t["routing_eval"]
    assert not torch.equal(routing[0], routing[2])  # these inputs route to different experts
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), str(out)]) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"lr": t["input"].numpy()})[0]
    assert np.abs(y - t["output_eval"].numpy()).max() <= 1e-4
    model = load_model(path)
    x = torch.rand(2, 3, 33, 21)  # another batch and size than the tracing input
    with torch.no_grad():
        ref = model(x).numpy()
    y = sess.run(None, {"lr": x.numpy()})[0]
    assert y.shape == ref.shape and np.abs(y - ref).max() <= 1e-4


def test_upscaler_onnx_backend():
    from seemore_sr import Upscaler

    model = load_model(GOLDEN / "base_x2.safetensors")
    img = (np.random.default_rng(0).random((20, 18, 3)) * 255).astype(np.uint8)
    a = Upscaler(model, device="cpu", backend="onnxruntime")(img)
    b = Upscaler(model, device="cpu")(img)
    assert a.shape == (40, 36, 3) and np.abs(a.astype(int) - b).max() <= 1
