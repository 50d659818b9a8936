import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from seemore_sr import SeemoReConfig, create_model, list_models, load_model
from seemore_sr.models.folded import fold
from seemore_sr.models.registry import VARIANTS
from seemore_sr.models.seemore import MoELayer, SeemoRe

from .conftest import GOLDEN

GOLDEN_FILES = sorted(GOLDEN.glob("*.safetensors"))


def tiny_cfg(**kw) -> SeemoReConfig:
    base = dict(scale=2, num_layers=2, embedding_dim=8, recursive=1)
    return SeemoReConfig(**{**base, **kw})


@pytest.mark.shared
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_eval_and_train(path):
    t = load_file(path)
    model = load_model(path)  # strict load through the public API
    assert not model.training
    with torch.no_grad():
        out = model(t["input"])  # the whole batch at once
    assert (out - t["output_eval"]).abs().max() <= 1e-4
    model.train()
    with torch.no_grad():
        out = model(t["input"])
    assert (out - t["output_train"]).abs().max() <= 1e-4


@pytest.mark.shared
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_routing(path):
    t = load_file(path)
    model = load_model(path)
    chosen = []
    hooks = [
        g.local_block.block.moe_layer.register_forward_hook(
            lambda m, inp, out: chosen.append(m.routing(inp[0])[1][:, 0])
        )
        for g in model.body
    ]
    with torch.no_grad():
        model(t["input"])
    for h in hooks:
        h.remove()
    assert torch.equal(torch.stack(chosen, 1).int(), t["routing_eval"])
    assert len(set(t["routing_eval"].flatten().tolist())) > 1  # the batch really mixes experts


def test_batch_equals_single_calls():
    torch.manual_seed(0)
    model = SeemoRe(tiny_cfg(num_layers=3)).eval()
    x = torch.rand(4, 3, 20, 24)
    x[1] *= 0.2  # push images towards different experts
    x[2] = 1 - x[2]
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert (batched - single).abs().max() <= 1e-5


def test_train_mode_matches_dense_gradients():
    """The sparse path (only chosen experts run) gives the dense path's outputs and gradients."""
    torch.manual_seed(1)
    model = SeemoRe(tiny_cfg(num_layers=2)).train()
    x = torch.rand(3, 3, 16, 16)
    x[1] = 1 - x[1]
    grads = []
    for dense in (False, True):
        model.zero_grad()
        (model(x, dense=dense) ** 2).mean().backward()
        grads.append(
            {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
        )
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    assert any(g.abs().sum() == 0 for n, g in grads[0].items() if ".experts." in n)  # some expert unchosen


def test_bf16_autocast_training_step_with_split_routing():
    """Mixed precision (bf16 autocast) through the sparse expert path, where only some images of
    a batch take an expert (gather / index_add): the gate's fp32 weights must not leak into a
    bf16 sum (a bf16 benchmark on the GPU failed there)."""
    torch.manual_seed(0)
    model = SeemoRe(tiny_cfg(num_layers=2)).train()
    x = torch.rand(6, 3, 16, 16)
    for group in model.body:  # image i prefers expert i mod 3: some experts take some images, not all
        logits = group.local_block.block.moe_layer.gate.body[-1]  # the router's linear layer
        logits.register_forward_hook(lambda m, i, out: out + 50 * torch.eye(3)[torch.arange(len(out)) % 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
        (y.float() ** 2).mean().backward()
        layer = MoELayer(8, [2, 3, 4], topk=1)  # bf16 features (CUDA's autocast), fp32 routing weights
        layer.gate.body[-1].register_forward_hook(lambda m, i, out: out + 50 * torch.eye(3)[torch.arange(6) % 3])
        out = layer(x[:, :1].expand(6, 8, 16, 16).bfloat16(), torch.rand(6, 8, 16, 16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("shuffle", [True, False])
def test_channels_last_training_matches_nchw(shuffle):
    """The campaign trains channels_last: its LayerNorm and shuffle take layout-keeping
    paths, which must give the NCHW outputs and gradients."""
    torch.manual_seed(2)
    cfg = tiny_cfg(num_layers=2, embedding_dim=12, use_shuffle=shuffle)
    a = SeemoRe(cfg).train()
    b = SeemoRe(cfg).train().to(memory_format=torch.channels_last)
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 3, 16, 20)
    ya = a(x)
    yb = b(x.contiguous(memory_format=torch.channels_last))
    assert yb.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(ya, yb, atol=1e-5)
    (ya**2).mean().backward()
    (yb**2).mean().backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        if pa.grad is None:
            assert pb.grad is None, name
            continue
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_presets_shape_and_finite(variant, scale):
    model = create_model(f"seemore-{variant}-x{scale}")
    x = torch.rand(1, 3, 17, 19)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, 17 * scale, 19 * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradients_reach_every_parameter(variant):
    """In train mode, with images routed to every expert, every parameter gets a gradient."""
    torch.manual_seed(0)
    model = create_model(f"seemore-{variant}-x2", num_layers=2).train()
    for g in model.body:  # a router that sends image i to expert i (and still gets its own gradient)
        g.local_block.block.moe_layer.gate.body[-1].register_forward_hook(lambda m, i, out: out + 50 * torch.eye(3))
    x = torch.rand(3, 3, 16, 16)
    model(x).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (15, 40), (33, 16)])
def test_any_input_size(size):
    model = SeemoRe(tiny_cfg(recursive=2, scale=3)).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, size[0] * 3, size[1] * 3)
    assert torch.isfinite(y).all()


def test_rank_growth_and_other_hyperparameters():
    for space, ranks in [("exp", [2, 4, 8, 16]), ("linear", [2, 3, 4, 5]), ("double", [2, 4, 6, 8])]:
        m = SeemoRe(tiny_cfg(num_experts=4, lr_space=space, topk=2, global_kernel_size=7, use_shuffle=False))
        got = [e.conv_1.out_channels for e in m.body[0].local_block.block.moe_layer.experts]
        assert got == ranks
        assert m.body[0].global_block.block.attn.conv[0].kernel_size == (1, 7)
        with torch.no_grad():
            assert m(torch.rand(2, 3, 8, 8)).shape == (2, 3, 16, 16)


def test_gray_model():
    m = SeemoRe(tiny_cfg(in_chans=1)).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


def test_mean_is_not_state():
    m = create_model("seemore-tiny-x2")
    assert "mean" not in m.state_dict()


@pytest.mark.parametrize(
    "bad", [dict(scale=5), dict(lr_space="cubic"), dict(topk=4), dict(embedding_dim=7), dict(global_kernel_size=4)]
)
def test_bad_config(bad):
    with pytest.raises(ValueError, match="invalid SeemoRe config"):
        tiny_cfg(**bad)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_cfg().scale = 3  # type: ignore[misc]


def test_registry():
    names = list_models()
    assert "seemore-tiny-x4" in names and "seemore-large-x2" in names and len(names) == 24
    with pytest.raises(ValueError, match="with bundled weights: .*seemore-tiny-x2"):
        create_model("seemore-huge-x2")
    with pytest.raises(TypeError, match="unknown config field"):
        create_model("seemore-tiny-x2", embed_dim=12)
    m = create_model("seemore-base-x3", num_experts=4)
    assert m.config.num_experts == 4 and m.config.scale == 3 and not m.training


@pytest.mark.shared
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_optimize_is_exact(path):
    from seemore_sr import optimize
    from seemore_sr.inference import nhwc

    t = load_file(path)
    model = load_model(path).train()
    fast = optimize(model)
    assert model.training  # the caller's module keeps its mode
    model.eval()
    assert (fast(t["input"]) - t["output_eval"]).abs().max() <= 1e-4
    x = torch.rand(1, 3, 9, 13)  # padded small input
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() <= 1e-4
    plain = fold(model, nhwc.NHWCOps(fused=False))  # the plain-op executor (autocast, builds without oneDNN)
    assert (plain(t["input"]) - t["output_eval"]).abs().max() <= 1e-4
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()


@pytest.mark.parametrize("affine", [False, True])
def test_fast_layer_norm_matches_torch(affine):
    # optimize's CPU LayerNorm is a composition of vectorised passes, not F.layer_norm:
    # it must agree on large offsets, flat pixels (variance 0, so eps decides) and affines.
    from seemore_sr.inference.nhwc import NHWCOps

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 9, 36, generator=g) * 3 + 50
    x[0, 0, :4] = 1.5  # four flat pixels (all channels equal): centred values are exactly 0
    x[1, 2] *= 1e-3
    w, b = (torch.randn(36, generator=g), torch.randn(36, generator=g)) if affine else (None, None)
    ref = torch.nn.functional.layer_norm(x, (36,), w, b, 1e-6)
    out = NHWCOps().norm(x, w, b)
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-4
    assert (out[0, 0, :4] == (b if affine else 0)).all()


@pytest.mark.shared
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_cuda_graph_module_runs_the_dense_network_exactly(path):
    # CudaGraphed (optimize's GPU path) runs the folded network dense so the graph is static;
    # off the GPU it runs that same dense network eagerly, which is checked here.
    from seemore_sr.inference.fast import CudaGraphed

    t = load_file(path)
    g = CudaGraphed(load_model(path))
    assert g.model.dense
    assert (g(t["input"]) - t["output_eval"]).abs().max() <= 1e-4  # three images, different experts
    with pytest.raises(RuntimeError, match="inference only"):
        g.train()


def test_exact_cudnn_turns_tf32_off_and_back():
    from seemore_sr.inference.fast import exact_cudnn

    before = torch.backends.cudnn.allow_tf32
    with exact_cudnn():
        assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 == before
