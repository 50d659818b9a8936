"""The wheel, as a user installs it: built from the checkout, installed into a
clean virtual environment outside it, it runs the main job with its bundled weights."""

import subprocess
import sys
import venv

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_wheel_runs_the_main_job_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True, timeout=600,
    )  # fmt: skip
    (wheel,) = wheels.glob("seemore_sr-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)  # the CPU build on local disk
    subprocess.run([*pip, str(wheel)], check=True, timeout=900)
    work = tmp_path / "elsewhere"
    work.mkdir()
    sample = (
        "from importlib import resources; import shutil; "
        "shutil.copy(resources.files('seemore_sr') / 'assets' / 'sample.png', 'sample.png')"
    )
    subprocess.run([str(py), "-c", sample], cwd=work, check=True, timeout=120)
    proc = subprocess.run(
        [str(env_dir / "bin" / "seemore"), "upscale", "sample.png", "-o", "out/"],
        cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (work / "out" / "sample.png").is_file() and "1 done" in proc.stdout
    where = subprocess.run(
        [str(py), "-c", "import seemore_sr; print(seemore_sr.__file__)"], cwd=work, capture_output=True, text=True
    ).stdout
    assert str(env_dir) in where and str(ROOT) not in where  # the wheel's copy, not the checkout
    listing = subprocess.run([str(py), "-m", "pip", "show", "-f", "seemore-sr"], capture_output=True, text=True).stdout
    assert "cpu-trunk" not in listing and "seemore-tiny-x4.safetensors" in listing
