"""Hostile files stay cheap and fail alone, in one line."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from seemore_sr import create_model, save_model
from seemore_sr.cli import main
from seemore_sr.data.images import ImageError, read_image
from seemore_sr.models import checkpoint
from seemore_sr.models.checkpoint import CheckpointError, load_checkpoint

from .test_batch import bomb, png


def small_state():
    torch.manual_seed(0)
    return create_model("seemore-tiny-x2", num_layers=1, embedding_dim=8).state_dict()


def test_pth_zip_bomb_refused_before_reading(tmp_path):
    """A .pth whose storage inflates far beyond its size: refused from the zip's directory,
    naming the file, before torch.load allocates anything."""
    good = tmp_path / "good.pth"
    torch.save(small_state(), good)
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        name = next(i.filename for i in src.infolist() if "/data/" in i.filename)
        dst.writestr(name.rsplit("/", 1)[0] + "/999", b"\0" * (32 << 20), compress_type=zipfile.ZIP_DEFLATED)
    assert evil.stat().st_size < (1 << 20)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: .* inflates .*zip bomb"):
        load_checkpoint(evil)
    assert load_checkpoint(good).config.embedding_dim == 8  # torch.save's own files pass


def test_declared_storage_over_the_limit_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.pth"
    torch.save(small_state(), path)
    monkeypatch.setattr(checkpoint, "MAX_DECLARED_BYTES", 1000)
    with pytest.raises(CheckpointError, match=r"big\.pth: refused: its storages declare .*nothing was read"):
        load_checkpoint(path)


def test_model_path_that_is_a_folder_or_device(tmp_path, capsys):
    img = png(tmp_path / "a.png")
    for bad, why in ((tmp_path, "is a folder, not a file"), ("/dev/null", "not a regular file")):
        assert main(["upscale", str(img), "-o", str(tmp_path / "o"), "--model", str(bad)]) == 2
        err = capsys.readouterr().err
        assert why in err and "no such checkpoint" not in err and err.count("\n") == 1, err


def test_one_dimensional_conv_weight_named(tmp_path):
    state = small_state()
    state["conv_1.weight"] = state["conv_1.weight"].flatten()
    path = tmp_path / "flat.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"flat\.pth: conv_1\.weight has shape \[\d+\]: a conv weight has 4"):
        load_checkpoint(path)


def test_safetensors_write_failure_is_an_oserror_with_nothing_left(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 10)
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError, match="cannot write .*No space left.*nothing was written"):
        save_model(create_model("seemore-tiny-x2", num_layers=1, embedding_dim=8), tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_fifo_input_is_one_line_not_a_hang(tmp_path, small_model):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = png(tmp_path / "good.png")
    code = (
        "import sys\nfrom seemore_sr.cli import main\n"
        f"sys.exit(main(['upscale', {str(fifo)!r}, {str(good)!r}, '-o', {str(tmp_path / 'o')!r},"
        f" '--model', {str(small_model)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "pipe.png: not a regular file" in proc.stderr
    assert (tmp_path / "o" / "good.png").exists()
    with pytest.raises(ImageError, match="pipe.png: not a regular file"):
        read_image(fifo)  # the training and eval reader too


def test_output_too_big_for_memory_fails_that_file_alone(tmp_path, small_model, capsys):
    a, b = png(tmp_path / "a.png", (2500, 2500)), png(tmp_path / "b.png", (8, 8))
    out = tmp_path / "o"
    assert main(["upscale", str(a), str(b), "-o", str(out), "--model", str(small_model), "--outscale", "32"]) == 1
    err = capsys.readouterr().err
    assert "a.png: the output would be 80000x80000" in err and "--outscale" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]


def test_decompression_bomb_in_eval_data_fails_alone(tmp_path, small_model, capsys):
    hr = tmp_path / "set" / "HR"
    bomb(hr / "bomb.png")
    png(hr / "good.png", (40, 32))
    with pytest.raises(ImageError, match=r"bomb\.png: too many pixels"):
        read_image(hr / "bomb.png")
    assert main(["eval", str(small_model), "--data", str(tmp_path / "set"), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "bomb.png: too many pixels" in err and "Traceback" not in err
    assert "set " in out and "      1" in out  # the good image is still scored


def test_float_tiff_read_by_its_range(tmp_path, small_model, capsys):
    """A float32 TIFF (mode F, values 0..1) came out almost black with exit 0."""
    rng = np.random.default_rng(4)
    values = rng.random((20, 24), dtype=np.float32) * 0.5 + 0.25
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    out = tmp_path / "o"
    assert main(["upscale", str(tmp_path / "f.tif"), "-o", str(out), "--model", str(small_model)]) == 0
    with Image.open(out / "f.tif") as im:
        up = np.asarray(im)
    assert im.mode == "F" and up.shape == (40, 48) and abs(float(up.mean()) - float(values.mean())) < 0.05
    assert main(["upscale", str(tmp_path / "f.tif"), "-o", str(tmp_path / "p"), "--model", str(small_model),
                 "--format", "png"]) == 1  # fmt: skip
    assert "only TIFF keeps its values" in capsys.readouterr().err
    Image.fromarray(values * 300, mode="F").save(tmp_path / "g.tif")
    assert main(["upscale", str(tmp_path / "g.tif"), "-o", str(out), "--model", str(small_model)]) == 1
    assert "values from" in capsys.readouterr().err and not (out / "g.tif").exists()


def test_train_into_a_read_only_run_folder_is_one_line(tmp_path, capsys, monkeypatch, random_images):
    """A read-only --run folder raised a bare OSError (and a full disk a SafetensorError)."""
    import errno

    if os.geteuid() == 0:  # root writes anywhere: the folder's first write fails as on a read-only disk

        def refuse(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr("seemore_sr.training.trainer.Path.write_text", refuse)
    folder = tmp_path / "hr"
    random_images(folder, 2, size=(40, 40))
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o500)
    try:
        args = ["train", "tiny", "--run", str(run), "--no-progress", "--set", f"data.train=[{folder}]",
                "--set", "data.val=null", "--set", "data.patch_size=16", "--set", "train.iterations=2"]  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "--run" in err and "cannot write the run folder" in err and err.count("\n") == 1, err
        assert list(run.iterdir()) == []
    finally:
        run.chmod(0o700)
