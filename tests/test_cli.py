"""The command line as a new user meets it: fast --help, --threads, eval's scale from the model,
where the outputs went, --quality, no progress-bar escapes in logs."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from seemore_sr.cli import main


def test_help_and_usage_errors_do_not_load_torch():
    """`seemore --help` took 3.3 s: torch was imported before the arguments were parsed."""
    code = (
        "import sys\nfrom seemore_sr.cli import main\n"
        "for argv in (['--help'], ['upscale', '--help'], ['train', '--help'], ['upscale']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "cpu-trunk" not in text and "(base, cpu, large, real, tiny)" in text  # train lists the recipes that ship


def test_threads_option(tmp_path, small_model, capsys):
    import torch

    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((12, 14, 3), np.uint8)).save(img)
    before = torch.get_num_threads()
    try:
        args = ["upscale", str(img), "-o", str(tmp_path / "o"), "--model", str(small_model), "--threads", "1"]
        assert main(args) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):
        main(["upscale", str(img), "-o", str(tmp_path / "o"), "--threads", "0"])
    assert "--threads: 0: from 1 to" in capsys.readouterr().err.replace("argument ", "")


def test_summary_names_the_output_folder_and_jpeg_quality(tmp_path, small_model, capsys, random_images):
    (img,) = random_images(tmp_path, size=(30, 24), name="a.jpg", quality=95)
    sizes = {}
    for q in (30, 95):
        out = tmp_path / f"q{q}"
        assert main(["upscale", str(img), "-o", str(out), "--model", str(small_model), "--quality", str(q)]) == 0
        assert f"outputs in {out}" in capsys.readouterr().out
        sizes[q] = (out / "a.jpg").stat().st_size
    assert sizes[30] < sizes[95]
    assert main(["upscale", str(img), "-o", str(tmp_path / "x"), "--model", str(small_model), "--quality", "0"]) == 2
    assert "--quality 0: must be an integer from 1 to 100" in capsys.readouterr().err


def test_eval_takes_the_scale_from_the_model(tmp_path, small_model, capsys, random_images):
    random_images(tmp_path / "set" / "HR", size=(40, 32), name="a.png")
    assert main(["eval", str(small_model), "--data", str(tmp_path / "set"), "--no-progress"]) == 0
    assert "x2 (Y channel, crop 2)" in capsys.readouterr().out
    assert main(["eval", "bicubic", "--data", str(tmp_path / "set"), "--no-progress"]) == 2
    assert "bicubic needs --scale" in capsys.readouterr().err


def test_no_progress_bar_escapes_when_stderr_is_not_a_terminal(tmp_path, small_model, random_images):
    (img,) = random_images(tmp_path, size=(70, 80), name="big.png")
    code = (
        "import sys\nfrom seemore_sr.cli import main\n"
        f"sys.exit(main(['upscale', {str(img)!r}, '-o', {str(tmp_path / 'o')!r}, '--model', {str(small_model)!r},"
        " '--tile', '16']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
