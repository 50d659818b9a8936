import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seemore_sr import load_model
from seemore_sr.cli import main
from seemore_sr.models.folded import fold

from .conftest import GOLDEN

ort = pytest.importorskip("onnxruntime")  # installed by .ci/run (the onnx extra)


@pytest.mark.shared
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


@pytest.mark.shared
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
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    with torch.no_grad():
        model.conv_1.bias.add_(0.1)
    export.onnx_runner(model)
    assert len(calls) == 2 and len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    cached.write_bytes(b"damaged")
    with torch.no_grad():
        model.conv_1.bias.sub_(0.1)
    assert torch.allclose(export.onnx_runner(model)(x), first, atol=1e-6) and len(calls) == 3


@pytest.mark.shared
@pytest.mark.parametrize("name", ["tiny_x4.safetensors", "base_x2.safetensors", "large_x3.safetensors"])
def test_folded_forms_give_the_authors_outputs(name):
    """The folded network (no shuffle or splits, norm affines folded, the experts as one
    low-rank product) in every executor and mode gives the authors' outputs, each image of
    the batch routed on its own."""
    from seemore_sr.inference.nhwc import NHWCOps

    t = load_file(GOLDEN / name)
    model = load_model(GOLDEN / name)
    for ops in (None, NHWCOps(), NHWCOps(fused=False)):
        for dense in (False, True):
            folded = fold(model, ops, dense=dense)
            assert len(list(folded.modules())) < len(list(model.modules()))  # folded, not a copy
            assert (folded(t["input"]) - t["output_eval"]).abs().max() <= 1e-5, (ops, dense)


def test_export_unfolded_graph(tmp_path):
    """``folded=False`` traces the eager module (dense MoE layers): the same function."""
    from seemore_sr import create_model
    from seemore_sr.inference.export import export_onnx

    torch.manual_seed(0)
    model = create_model("seemore-tiny-x2", num_layers=2, embedding_dim=8)
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    x = torch.rand(2, 3, 18, 21)
    out = {}
    for folded in (True, False):
        path = export_onnx(model, tmp_path / f"{folded}.onnx", folded=folded)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out[folded] = sess.run(None, {"lr": x.numpy()})[0]
    assert len(out) == 2 and (tmp_path / "True.onnx").stat().st_size != (tmp_path / "False.onnx").stat().st_size
    with torch.no_grad():
        ref = model(x).numpy()
    for y in out.values():
        assert np.abs(y - ref).max() <= 1e-5


def test_foreign_graph_in_the_cache_is_not_trusted(tmp_path, monkeypatch):
    """A valid ONNX graph of another network at the cache path gave a 64x48 "x4" output with
    exit 0: the cache's recorded digest catches it, and every backend's output shape is checked."""
    from seemore_sr import Upscaler, create_model
    from seemore_sr.errors import Refused
    from seemore_sr.inference import export

    monkeypatch.setenv("SEEMORE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    x4 = create_model("seemore-tiny-x4", num_layers=1, embedding_dim=8)
    x1 = create_model("seemore-tiny-x1", num_layers=1, embedding_dim=8)
    export.onnx_runner(x4)
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    export.export_onnx(x1, cached)  # a foreign graph where x4's was
    img = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    assert Upscaler(x4, device="cpu", backend="onnxruntime")(img).shape == (48, 64, 3)  # exported again
    up = Upscaler(x4, device="cpu", backend="onnxruntime")
    up.engine.fast = export.OnnxUpscaler(export.export_onnx(x1, tmp_path / "x1.onnx"), 4, 16)  # unverified
    with pytest.raises(Refused, match="backend gave .* for a x4 upscale"):
        up(img)
