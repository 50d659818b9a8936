"""``seemore upscale`` under torchrun: 2 CPU ranks (gloo, --standalone) over a
folder of images and a short video with audio, cut into 4 segments that the ranks share,
give the bytes one process gives, each rank writing only its own files, and a rerun with
--skip-existing picks up what is missing."""

import subprocess
import sys

import numpy as np
import pytest

from .conftest import write_image
from .test_video import audio_packets, frames, make_clip

av = pytest.importorskip("av")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_two_ranks_give_the_one_process_bytes(tmp_path, small_model):
    inputs = tmp_path / "in"
    for i in range(5):
        write_image(inputs / f"img{i}.png", (24, 20 + i), seed=i)
    make_clip(inputs / "clip.mp4", pts=range(8), gop=2)  # 4 segments of 2 frames: the ranks share them
    common = ["upscale", str(inputs), "--video-segment", "2", "-o"]
    one = run([sys.executable, "-m", "seemore_sr", *common, str(tmp_path / "one"), "--model", str(small_model)])
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = run([*launcher, "-m", "seemore_sr", *common, str(tmp_path / "two"), "--model", str(small_model)])
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("6 done") == 1  # one summary, rank 0's, for all ranks
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 6
    for name in names:
        a, b = tmp_path / "one" / name, tmp_path / "two" / name
        if name.endswith(".mp4"):  # the same frames, time stamps and audio, whatever the bytes
            fa, fb = frames(a), frames(b)
            assert [p for p, _ in fa] == [p for p, _ in fb] and len(fa) == 8
            assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(fa, fb, strict=True))
            assert audio_packets(a) == audio_packets(b)
        assert a.read_bytes() == b.read_bytes(), name
    (tmp_path / "two" / "img3.png").unlink()  # a killed rank's share: the rerun picks it up
    again = [*common, str(tmp_path / "two"), "--model", str(small_model), "--skip-existing"]
    rerun = run([*launcher, "-m", "seemore_sr", *again])
    assert rerun.returncode == 0 and "1 done, 5 skipped" in rerun.stdout, rerun.stdout + rerun.stderr
    assert (tmp_path / "two" / "img3.png").read_bytes() == (tmp_path / "one" / "img3.png").read_bytes()
