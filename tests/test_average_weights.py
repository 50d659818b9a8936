"""scripts/average_weights.py: the element-wise mean of checkpoints of one network."""

import pytest
import torch

from seemore_sr import create_model, load_model, save_model

from .conftest import load_script


def test_mean_of_two_checkpoints(tmp_path):
    torch.manual_seed(0)
    a, b = create_model("seemore-tiny-x2"), create_model("seemore-tiny-x2")
    save_model(a, tmp_path / "a.safetensors")
    save_model(b, tmp_path / "b.safetensors")
    out = tmp_path / "avg.safetensors"
    assert (
        load_script("average_weights").main(
            [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "-o", str(out)]
        )
        == 0
    )
    avg = load_model(out).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # two different networks, so the mean is a real check
    for k in sa:
        torch.testing.assert_close(avg[k], (sa[k] + sb[k]) / 2)


def test_different_networks_refused(tmp_path, capsys):
    save_model(create_model("seemore-tiny-x2"), tmp_path / "x2.safetensors")
    save_model(create_model("seemore-tiny-x4"), tmp_path / "x4.safetensors")
    out = tmp_path / "avg.safetensors"
    rc = load_script("average_weights").main(
        [str(tmp_path / "x2.safetensors"), str(tmp_path / "x4.safetensors"), "-o", str(out)]
    )
    assert rc == 1
    assert "a different network" in capsys.readouterr().err
    assert not out.exists()


def test_one_file_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        load_script("average_weights").main([str(tmp_path / "a.safetensors"), "-o", str(tmp_path / "b.safetensors")])
