"""Videos as people have them: every container we claim, screen recordings' bursts of
frames, cut and damaged files, odd names, limits and options checked before any compute."""

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from seemore_sr.cli import main

av = pytest.importorskip("av")  # the [video] extra, installed by .ci/run


def clip(path: Path, codec="libx264", pts=None, n=12, size=(32, 24), pix="yuv420p", rate=10, tb=None, fmt=None):
    """A clip of random frames: ``pts`` (default 0..n-1) in time base ``tb`` (default 1 / rate)."""
    rng = np.random.default_rng(0)
    pts = list(pts if pts is not None else range(n))
    with av.open(str(path), "w", format=fmt) as c:
        v = c.add_stream(codec, rate=rate)
        v.width, v.height = size
        v.pix_fmt = pix
        if tb is not None:
            v.codec_context.time_base = v.time_base = tb
        if codec == "libx264":
            v.options = {"bframes": "0"} if tb is not None else {}
        for p in pts:
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), format="rgb24")
            f = f.reformat(format=pix)
            f.pts = p
            if tb is not None:
                f.time_base = tb
            for packet in v.encode(f):
                c.mux(packet)
        for packet in v.encode(None):
            c.mux(packet)
    return path


def pts_of(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seemore_sr", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "name, codec, pix, out_name, out_codec",
    [
        ("a.mp4", "libx264", "yuv420p", "a.mp4", "h264"),
        ("a.mov", "libx264", "yuv420p", "a.mov", "h264"),
        ("a.mkv", "libx264", "yuv420p", "a.mkv", "h264"),
        ("a.webm", "libvpx-vp9", "yuv420p", "a.webm", "vp9"),
        ("h264.avi", "libx264", "yuv420p", "h264.mkv", "h264"),  # B-frames with AVI's guessed time stamps
        ("mjpeg.avi", "mjpeg", "yuvj420p", "mjpeg.mkv", "h264"),  # a camera's MJPEG file
        ("mpeg4.avi", "mpeg4", "yuv420p", "mpeg4.mkv", "h264"),
    ],
)
def test_every_container_we_claim(tmp_path, small_model, name, codec, pix, out_name, out_codec):
    src = clip(tmp_path / name, codec=codec, pix=pix)
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(small_model), "--no-progress"]) == 0
    dst = out / out_name
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == out_codec
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (64, 48)
    times = [float(f.pts * f.time_base) for f in frames]
    assert times == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    assert [p.name for p in out.iterdir()] == [out_name]  # no segments folder left


def test_bursts_of_frames_keep_their_exact_time_stamps(tmp_path, small_model):
    """A screen recording: frames 1/16000 s apart, then seconds of nothing."""
    stamps = [0, 16, 32, 48, 3200, 3216, 3232, 9600, 9616, 24000, 24016, 24032]
    src = clip(tmp_path / "screen.mp4", pts=stamps, tb=Fraction(1, 16000), rate=30)
    assert pts_of(src) == stamps
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(small_model), "--no-progress"]) == 0
    assert pts_of(out / "screen.mp4") == stamps


@pytest.mark.parametrize("name, codec, pix", [("cut.mkv", "ffv1", "bgr0"), ("cut.mp4", "libx264", "yuv420p")])
def test_a_cut_file_is_a_failure_not_done(tmp_path, small_model, name, codec, pix):
    whole = clip(tmp_path / f"whole-{name}", codec=codec, pix=pix, n=60)
    if name.endswith(".mp4"):  # faststart: the index (declaring 60 frames) before the data
        fast = tmp_path / name
        with av.open(str(whole)) as i, av.open(str(fast), "w", options={"movflags": "faststart"}) as o:
            s = o.add_stream_from_template(i.streams.video[0])
            for p in i.demux(i.streams.video[0]):
                if p.size:
                    p.stream = s
                    o.mux(p)
        data = fast.read_bytes()
    else:
        data = whole.read_bytes()
    cut = tmp_path / "in" / name
    cut.parent.mkdir()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    proc = run("upscale", cut, "-o", tmp_path / "out", "--model", small_model, "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 done" in proc.stdout and "1 failed" in proc.stdout
    assert "truncated" in proc.stderr and "declares" in proc.stderr or "truncated" in proc.stderr
    assert not any((tmp_path / "out").glob(name))


def test_a_size_change_mid_stream_is_refused(small_model):
    """A frame of another size than the stream's first is refused by name, never cropped."""
    from seemore_sr import Upscaler
    from seemore_sr.errors import Refused
    from seemore_sr.inference.video import _upscaled

    frame = av.VideoFrame.from_ndarray(np.zeros((30, 40, 3), np.uint8), format="rgb24")
    frame.pts, frame.time_base = 7, Fraction(1, 10)

    class Out:
        width, height, pix_fmt = 64, 48, "yuv420p"

    with pytest.raises(Refused, match=r"frame size changes mid-stream \(32x24 to 40x30 at time 0.7 s\)"):
        _upscaled(av, Upscaler(str(small_model)), frame, Out(), (32, 24))
    assert _upscaled(av, Upscaler(str(small_model)), frame, Out(), (40, 30)).width == 64


def test_video_frames_meet_the_pixel_limit_before_decoding_and_the_batch_goes_on(tmp_path, small_model):
    big = clip(tmp_path / "a-big.mp4", size=(64, 48))
    small = clip(tmp_path / "b-small.mp4", size=(16, 16))
    proc = run("upscale", big, small, "-o", tmp_path / "out", "--model", small_model, "--max-pixels", "1000",
               "--no-progress")  # fmt: skip
    assert "a-big.mp4: 64x48 frames are over the 1,000 pixel limit" in proc.stderr
    assert "1 done" in proc.stdout and (tmp_path / "out" / "b-small.mp4").exists()
    assert "hint: --max-pixels" in proc.stderr


def test_a_name_with_brackets_leaves_no_segments_behind(tmp_path, small_model):
    src = clip(tmp_path / "Movie [1080p].mp4")
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(small_model), "--no-progress"]) == 0
    assert [p.name for p in out.iterdir()] == ["Movie [1080p].mp4"]


def test_a_damaged_or_short_segment_is_made_again(tmp_path, small_model):
    from seemore_sr import Upscaler
    from seemore_sr.inference.video import plan_video, run_segments, upscale_video

    src = clip(tmp_path / "seg.mkv", codec="mjpeg", pix="yuvj420p", n=12)  # every frame a keyframe
    up = Upscaler(str(small_model))
    dst = tmp_path / "out" / "seg.mkv"
    plan = plan_video(up, src, dst, codec="ffv1", segment_frames=1)
    assert plan.segments == 12
    run_segments(up, plan, range(plan.segments))
    plan.part(3).write_bytes(b"not a video")  # bit rot
    good = plan.part(4).read_bytes()
    plan.part(4).write_bytes(good[: len(good) // 2])  # cut short
    assert not plan.sound(3) and not plan.sound(4) and plan.sound(5)
    upscale_video(up, src, dst, codec="ffv1", segment_frames=1)
    assert len(pts_of(dst)) == 12


def test_a_deep_colour_video_says_what_was_dropped(tmp_path, small_model):
    src = clip(tmp_path / "deep.mkv", codec="ffv1", pix="yuv420p10le")
    proc = run("upscale", src, "-o", tmp_path / "out", "--model", small_model, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "10-bit depth of its yuv420p10le frames not kept" in proc.stderr


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--video-codec", "nosuchcodec"], "no 'nosuchcodec' encoder"),
        (["--video-codec", "aac"], "audio encoder"),
        (["--crf", "-5"], "--crf: '-5'"),
        (["--crf", "99"], "--crf: '99'"),
        (["--threads", "1000000"], "--threads: 1000000: from 1 to"),
        (["--outscale", "inf"], "--outscale: 'inf'"),
        (["--outscale", "1e300"], "--outscale: '1e300'"),
    ],
)
def test_video_options_are_checked_at_argument_time(tmp_path, flags, words):
    proc = run("upscale", tmp_path / "clip.mp4", "-o", tmp_path / "out", *flags)
    assert proc.returncode == 2 and words in proc.stderr.replace("argument ", "")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 20


def test_a_container_that_cannot_hold_the_codec_is_refused_before_compute(tmp_path, small_model):
    src = clip(tmp_path / "a.webm", codec="libvpx-vp9")
    proc = run("upscale", src, "-o", tmp_path / "out", "--model", small_model, "--video-codec", "libx264")
    assert (
        proc.returncode == 1 and "a .webm file cannot hold libx264 video; use --video-codec libvpx-vp9" in proc.stderr
    )
    assert "hint: --video-codec" in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before any compute, and no folder left
