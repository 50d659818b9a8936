"""The trainer's footprint: decoded images cached on disk by content,
micro-batches that give the whole batch's step, and a short run that leaves its numbers."""

import json

import numpy as np
import pytest
import torch

from seemore_sr.data.paired import PairedImages
from seemore_sr.training.config import ConfigError, load_config
from seemore_sr.training.trainer import train

from .test_train import data, sets  # noqa: F401 - the module's data fixture


def test_decoded_images_cached_by_content(tmp_path, random_images):
    folder = tmp_path / "hr"
    random_images(folder, 3, size=(44, 40))
    cache = tmp_path / "cache"
    first = PairedImages([folder], 2, 8, cache=cache)
    again = PairedImages([folder], 2, 8, cache=cache)
    assert (first.cached, again.cached) == (0, 3) and len(list(cache.glob("*.npz"))) == 3
    for a, b in zip(first.pairs, again.pairs, strict=True):
        assert np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr)
    # a changed file gets a new entry; a damaged entry is rebuilt, not trusted
    random_images(folder, size=(44, 40), name="0.png", seed=7)
    for entry in cache.glob("*.npz"):
        entry.write_bytes(b"damaged")
    third = PairedImages([folder], 2, 8, cache=cache)
    assert third.cached == 0 and len(list(cache.glob("*.npz"))) == 4  # 2 rebuilt, 1 new, 0.png's old one left
    assert PairedImages([folder], 2, 8, cache=cache).cached == 3
    fresh = PairedImages([folder], 2, 8, cache=None)
    for a, b in zip(fresh.pairs, third.pairs, strict=True):
        assert np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr)


def test_micro_batches_give_the_whole_batch_step(tmp_path, data):  # noqa: F811
    out = {}
    for mb in (0, 1):
        cfg = load_config(None, sets(data, **{"train.batch_size": 4, "train.micro_batch": mb, "train.iterations": 3}))
        result = train(cfg, tmp_path / f"mb{mb}", progress=False)
        out[mb] = result["model"].state_dict()
    for k, v in out[0].items():
        assert torch.allclose(v, out[1][k], atol=1e-5), k
    with pytest.raises(ConfigError, match="micro_batch: must divide"):
        load_config(None, sets(data, **{"train.batch_size": 4, "train.micro_batch": 3}))


def test_a_short_run_leaves_its_numbers(tmp_path, data, capsys):  # noqa: F811
    """A one-minute trial left an empty metrics.jsonl, a blank curves.png and 'best Set5 PSNR -inf'."""
    from seemore_sr.cli import main

    run = tmp_path / "short"
    args = ["train", "tiny", "--run", str(run), "--no-progress"]
    args += [a for s in sets(data, **{"train.log_every": 100, "train.val_every": 100}) for a in ("--set", s)]
    assert main([*args, "--set", "train.iterations=100", "--max-minutes", "0.001"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in rows) and any("val_psnr" in r for r in rows)
    out = capsys.readouterr().out
    assert "-inf" not in out and "best val PSNR" in out  # the validation folder by name
