import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from seemore_sr import CheckpointError, create_model, load_model, save_model
from seemore_sr.cli import main
from seemore_sr.models.checkpoint import infer_config, read_checkpoint

from .conftest import GOLDEN


@pytest.fixture(scope="module")
def golden_state():
    t = load_file(GOLDEN / "tiny_x4.safetensors")
    return {k[len("state_dict.") :]: v for k, v in t.items() if k.startswith("state_dict.")}, t


def same_output(model, t):
    with torch.no_grad():
        return (model(t["input"]) - t["output_eval"]).abs().max().item() <= 1e-4


@pytest.mark.shared
@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"params": sd},  # BasicSR
        lambda sd: {"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}},
        lambda sd: sd,  # bare
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},  # DataParallel
    ],
    ids=["params", "params_ema", "bare", "state_dict", "module"],
)
def test_reads_pickled_layouts(tmp_path, golden_state, wrap):
    sd, t = golden_state
    path = tmp_path / "net.pth"
    torch.save(wrap(sd), path)
    model = load_model(path)  # shapes are read, shuffle/recursion come from the presets
    assert model.config.embedding_dim == 36 and model.config.scale == 4 and model.config.num_layers == 6
    assert same_output(model, t)


@pytest.mark.shared
def test_reads_bare_safetensors_and_infers(tmp_path, golden_state):
    sd, t = golden_state
    path = tmp_path / "net.safetensors"
    save_file(sd, path)
    cfg = infer_config(sd)
    assert (cfg.lr_space, cfg.num_experts, cfg.global_kernel_size, cfg.in_chans) == ("exp", 3, 11, 3)
    assert same_output(load_model(path), t)


def test_infers_large_and_rank_growth():
    sd = create_model("seemore-large-x3").state_dict()
    cfg = infer_config(sd)
    assert (cfg.num_layers, cfg.use_shuffle, cfg.recursive, cfg.scale) == (16, False, 1, 3)
    sd = create_model("seemore-tiny-x2", lr_space="double", num_experts=4).state_dict()
    assert infer_config(sd).lr_space == "double" and infer_config(sd).num_experts == 4


@pytest.mark.shared
def test_overrides(tmp_path, golden_state):
    sd, _ = golden_state
    path = tmp_path / "net.pth"
    torch.save(sd, path)
    assert load_model(path, recursive=1).config.recursive == 1
    with pytest.raises(TypeError, match="unknown config field"):
        load_model(path, recursion=1)


def test_roundtrip_our_format(tmp_path):
    model = create_model("seemore-tiny-x3", topk=2)
    path = save_model(model, tmp_path / "m.safetensors", dataset="T91", iterations=10)
    back = load_model(path)
    assert back.config == model.config  # topk cannot be read off shapes: it comes from metadata
    assert back.provenance["iterations"] == 10 and back.provenance["dataset"] == "T91"
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    assert set(load_file(path)) == set(model.state_dict())  # the authors' tensor names


@pytest.mark.shared
def test_convert_cli(tmp_path, golden_state):
    sd, t = golden_state
    src = tmp_path / "basicsr.pth"
    torch.save({"params": sd, "iter": 5}, src)
    out = tmp_path / "ours.safetensors"
    assert main(["convert", str(src), str(out)]) == 0
    _, meta = read_checkpoint(out)
    assert meta["config"]["embedding_dim"] == 36
    assert same_output(load_model(out), t)
    before = out.read_bytes()
    assert main(["convert", str(src), str(out), "--override", "topk=2"]) == 2  # exists: refused, untouched
    assert out.read_bytes() == before
    assert main(["convert", str(src), str(out), "--override", "topk=2", "--overwrite"]) == 0
    assert read_checkpoint(out)[1]["config"]["topk"] == 2


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty file"),
        (b"hello world, not a checkpoint", "not a checkpoint"),
        (pickle.dumps({"params": Evil()}), "refused|not a checkpoint"),
    ],
    ids=["empty", "garbage", "code-pickle"],
)
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_pickle_needing_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"params": Evil()}, path)
    with pytest.raises(CheckpointError, match="code execution"):
        load_model(path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.shared
def test_truncated(tmp_path, golden_state):
    sd, _ = golden_state
    for name, saver in [("a.pth", torch.save), ("a.safetensors", lambda d, p: save_file(d, p))]:
        path = tmp_path / name
        saver(sd, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated|not a"):
            load_model(path)


@pytest.mark.shared
def test_missing_unexpected_and_shapes(tmp_path, golden_state):
    sd, _ = golden_state
    broken = dict(sd)
    del broken["body.2.local_block.norm_1.weight"]
    broken["extra.weight"] = torch.zeros(3)
    torch.save(broken, tmp_path / "a.pth")
    with pytest.raises(
        CheckpointError, match=r"missing keys: body\.2\.local_block\.norm_1\.weight.*unexpected keys: extra"
    ):
        load_model(tmp_path / "a.pth")
    bad = dict(sd)
    bad["upsampler.0.weight"] = torch.zeros(50, 36, 3, 3)
    torch.save(bad, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="no integer scale"):
        load_model(tmp_path / "b.pth")
    torch.save({"foo": torch.zeros(2)}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="fit no SeemoRe"):
        load_model(tmp_path / "c.pth")
    (tmp_path / "d.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "d.safetensors")


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "x.pth"
    path.write_bytes(b"")
    assert main(["convert", str(path), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "empty file" in err and "Traceback" not in err
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.shared
@pytest.mark.slow
def test_profile_cli(capsys):
    assert main(["profile", "seemore-tiny-x4"]) == 0
    out = capsys.readouterr().out
    assert "231.8K" in out and "GMACs       11.8" in out
    assert main(["profile", str(GOLDEN / "base_x2.safetensors")]) == 0
    assert "490.4K" in capsys.readouterr().out


def test_metadata_config_is_json(tmp_path):
    path = save_model(create_model("seemore-tiny-x2"), tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["config"])["scale"] == 2


def test_profile_latency(capsys):
    assert main(["profile", "seemore-tiny-x2", "--latency", "--input-size", "16", "20", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "ms median over 2 runs on cpu (20x16 input)" in out


@pytest.mark.shared
def test_convert_disk_full_is_one_line(tmp_path, golden_state, capsys, monkeypatch):
    import errno

    from seemore_sr.models import checkpoint

    sd, _ = golden_state
    torch.save({"params": sd}, tmp_path / "net.pth")

    def full(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 100)  # a part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    assert main(["convert", str(tmp_path / "net.pth"), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "cannot write (No space left on device); nothing was written" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pth"]  # no output, no temporary left


def test_every_cli_option_has_help():
    import argparse

    from seemore_sr.cli import build_parser

    missing = []

    def walk(parser, where):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                missing.extend(f"{where} {c.dest}" for c in a._choices_actions if not c.help)
                for name, sub in a.choices.items():
                    walk(sub, f"{where} {name}")
            elif not a.help and not isinstance(a, argparse._HelpAction):
                missing.append(f"{where} {a.option_strings or a.dest}")

    walk(build_parser(), "seemore")
    assert not missing, missing
