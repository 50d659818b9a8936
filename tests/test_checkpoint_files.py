"""Untrusted checkpoints stay cheap: a small hostile file is refused with one
line naming the file and the problem, before any model is built from its claims."""

import json

import pytest
import torch
from safetensors.torch import save_file

from seemore_sr import CheckpointError, create_model, load_model
from seemore_sr.cli import main
from seemore_sr.models.checkpoint import LIMITS
from seemore_sr.models.seemore import SeemoRe


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create_model("seemore-tiny-x2")
    return model.config, {k: v.clone() for k, v in model.state_dict().items()}


def with_config(path, state, **fields):
    """A safetensors file with real tiny-x2 tensors and a config claiming ``fields``."""
    from dataclasses import asdict

    config = {**asdict(create_model("seemore-tiny-x2").config), **fields}
    save_file(state, str(path), metadata={"format": "seemore-sr", "config": json.dumps(config)})
    return path


@pytest.fixture
def builds(monkeypatch):
    """The devices SeemoRe models are built on while loading (meta: shapes only, no memory)."""
    from seemore_sr.models import checkpoint

    seen = []

    def spy(config):
        seen.append(torch.get_default_device().type)
        return SeemoRe(config)

    monkeypatch.setattr(checkpoint, "SeemoRe", spy)
    return seen


def refused(path, match, builds):
    """Loading ``path`` fails with a message naming the file, no real model built first."""
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert "cpu" not in builds and "cuda" not in builds, builds
    return str(err.value)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"embedding_dim": 4096}, "embedding_dim=4096"),
        ({"num_experts": 10**6}, "num_experts=1000000"),
        ({"num_layers": 20000}, "num_layers=20000"),
        ({"recursive": 8}, "recursive=8"),
        ({"global_kernel_size": "11"}, "global_kernel_size must be a positive integer, got '11'"),
        ({"use_shuffle": "yes"}, "use_shuffle must be true or false"),
        ({"img_range": None}, "img_range must be a number"),
        ({"embedding_dim": 48}, "fit no SeemoRe of this config .* parameters implied"),
    ],
)
def test_metadata_claims_checked_before_building(tmp_path, tiny, fields, match, builds):
    _, state = tiny
    refused(with_config(tmp_path / "m.safetensors", state, **fields), match, builds)


def test_shapes_beyond_limits_in_a_pickle(tmp_path, tiny, builds):
    _, state = tiny
    wide = {**state, "conv_1.weight": torch.zeros(8192, 3, 3, 3)}
    torch.save(wide, tmp_path / "wide.pth")
    refused(tmp_path / "wide.pth", "embedding_dim=8192", builds)
    one = torch.zeros(1)
    deep = {**state, **{f"body.{i}.x": one for i in range(6, 20000)}}  # 20,000 groups claimed
    torch.save(deep, tmp_path / "deep.pth")
    refused(tmp_path / "deep.pth", "num_layers=20000", builds)


def test_limits_admit_every_released_variant():
    for name in ("seemore-large-x4", "seemore-base-x2", "seemore-tiny-x3"):
        config = create_model(name).config
        assert all(getattr(config, k) <= most for k, most in LIMITS.items()), name


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_refused(tmp_path, tiny, bad, builds):
    _, state = tiny
    broken = dict(state)
    broken["body.3.global_block.block.proj.weight"] = broken["body.3.global_block.block.proj.weight"].clone()
    broken["body.3.global_block.block.proj.weight"].view(-1)[5] = bad
    torch.save(broken, tmp_path / "nan.pth")
    msg = refused(tmp_path / "nan.pth", "non-finite", builds)
    assert "body.3.global_block.block.proj.weight" in msg


def test_integer_weights_refused(tmp_path, tiny, builds):
    _, state = tiny
    torch.save({**state, "conv_1.bias": state["conv_1.bias"].to(torch.int64)}, tmp_path / "int.pth")
    refused(tmp_path / "int.pth", "floating point.*conv_1.bias", builds)


def test_onnx_named_as_such(tmp_path, builds):
    head = b"\x08\x08\x12\x07pytorch\x1a\x052.13.0:\x00"  # the start of what torch.onnx writes
    for name in ("model.onnx", "model.pth"):
        (tmp_path / name).write_bytes(head + b"\x00" * 64)
        msg = refused(tmp_path / name, "ONNX model", builds)
        assert "pickle" not in msg


def test_cli_one_line_and_no_output(tmp_path, tiny, capsys):
    _, state = tiny
    bad = with_config(tmp_path / "bad.safetensors", state, recursive=8)
    img = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (20, 20), "red").save(img)
    out = tmp_path / "out.png"
    assert main(["upscale", str(img), "-o", str(out), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "recursive=8" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["profile", str(bad)]) == 2
    assert "recursive=8" in capsys.readouterr().err


def test_good_files_still_load(tmp_path, tiny):
    config, state = tiny
    model = load_model(with_config(tmp_path / "ok.safetensors", state))
    assert model.config == config
