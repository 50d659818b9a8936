import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seemore_sr import load_model
from seemore_sr.cli import main

from .conftest import GOLDEN

ort = pytest.importorskip("onnxruntime")  # installed by .ci/run (the onnx extra)


@pytest.mark.slow
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


@pytest.mark.slow
def test_upscaler_onnx_backend():
    from seemore_sr import Upscaler

    model = load_model(GOLDEN / "base_x2.safetensors")
    img = (np.random.default_rng(0).random((20, 18, 3)) * 255).astype(np.uint8)
    a = Upscaler(model, device="cpu", backend="onnxruntime")(img)
    b = Upscaler(model, device="cpu")(img)
    assert a.shape == (40, 36, 3) and np.abs(a.astype(int) - b).max() <= 1


def test_onnx_graph_cached_by_weights(tmp_path, monkeypatch):
    """--backend onnxruntime exports once per weights (it re-exported on every run, 2x slower
    than torch); other weights get their own graph, a damaged cache entry is replaced."""
    from seemore_sr import create_model
    from seemore_sr.inference import export

    monkeypatch.setenv("SEEMORE_CACHE", str(tmp_path))
    calls = []
    real = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    model = create_model("seemore-tiny-x2", num_layers=1, embedding_dim=8)
    x = torch.rand(1, 3, 16, 20)
    first = export.onnx_runner(model)(x)
    assert torch.equal(export.onnx_runner(model)(x), first) and len(calls) == 1
    (cached,) = (tmp_path / "onnx").iterdir()
    with torch.no_grad():
        model.conv_1.bias.add_(0.1)
    export.onnx_runner(model)
    assert len(calls) == 2 and len(list((tmp_path / "onnx").iterdir())) == 2
    cached.write_bytes(b"damaged")
    with torch.no_grad():
        model.conv_1.bias.sub_(0.1)
    assert torch.allclose(export.onnx_runner(model)(x), first, atol=1e-6) and len(calls) == 3


@pytest.mark.parametrize("name", ["tiny_x4.safetensors", "base_x2.safetensors", "large_x3.safetensors"])
def test_export_graph_is_the_network(name):
    """The folded graph export_onnx traces (no shuffle or splits, norm affines folded, the
    experts as one low-rank product) gives the authors' outputs, each image routed on its own."""
    from seemore_sr.inference.graph import ExportGraph

    t = load_file(GOLDEN / name)
    model = load_model(GOLDEN / name)
    graph = ExportGraph(model).eval()
    assert len(list(graph.modules())) < len(list(model.modules()))  # folded, not a copy
    with torch.no_grad():
        assert (graph(t["input"]) - t["output_eval"]).abs().max() <= 1e-5


def test_export_graph_other_configs():
    """Rank growth, top-k > 1 and no shuffle, none of them in the released variants' graphs."""
    from seemore_sr import create_model
    from seemore_sr.inference.graph import ExportGraph

    torch.manual_seed(0)
    for overrides in ({"topk": 2, "lr_space": "linear"}, {"use_shuffle": False, "num_experts": 4, "topk": 3}):
        model = create_model("seemore-tiny-x3", num_layers=2, embedding_dim=8, **overrides)
        for p in model.parameters():  # away from the init's zero biases and unit norms
            p.data.add_(torch.randn_like(p) * 0.1)
        x = torch.rand(3, 3, 17, 23)
        with torch.no_grad():
            assert (ExportGraph(model)(x) - model(x)).abs().max() <= 1e-5, overrides


def test_openvino_backend(tmp_path, monkeypatch):
    """--backend openvino: the cached graph in OpenVINO, fp32 (not its bf16 default on AMX
    CPUs): the authors' outputs, per-image routing, any size, the same image as torch."""
    pytest.importorskip("openvino")  # installed by .ci/run (the openvino extra)
    from seemore_sr import Upscaler
    from seemore_sr.inference import export

    monkeypatch.setenv("SEEMORE_CACHE", str(tmp_path))
    t = load_file(GOLDEN / "tiny_x4.safetensors")
    model = load_model(GOLDEN / "tiny_x4.safetensors")
    runner = export.onnx_runner(model, runtime="openvino")
    assert isinstance(runner, export.OpenVinoUpscaler)
    assert (runner(t["input"]) - t["output_eval"]).abs().max() <= 1e-4
    x = torch.rand(2, 3, 19, 30)
    with torch.no_grad():
        ref = model(x)
    assert (runner(x) - ref).abs().max() <= 1e-4  # another batch and size: the same compiled model
    img = (np.random.default_rng(0).random((20, 18, 3)) * 255).astype(np.uint8)
    a = Upscaler(model, device="cpu", backend="openvino")(img)
    b = Upscaler(model, device="cpu")(img)
    assert a.shape == (80, 72, 3) and np.abs(a.astype(int) - b).max() <= 1
    with pytest.raises(ValueError, match="openvino backend runs on the CPU in fp32"):
        Upscaler(model, device="cpu", backend="openvino", precision="bf16", force_precision=True)
