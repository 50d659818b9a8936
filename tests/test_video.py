"""Video: ``seemore upscale clip.mp4`` keeps frames, time stamps, rate, duration
and audio; lossless output equals upscaling each frame as an image; bad files fail alone."""

from pathlib import Path

import numpy as np
import pytest

from seemore_sr import Upscaler
from seemore_sr.cli import main

av = pytest.importorskip("av")  # the [video] extra, installed by .ci/run


def make_clip(path: Path, pts=range(12), size=(32, 24), codec="libx264", audio=True, rate=10, gop=None, rotation=0):
    """A small clip of random frames at the given time stamps (1 / rate each), with a sine
    audio track: what the tests upscale. ``gop``: a keyframe every ``gop`` frames."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=rate)
        v.width, v.height = size
        if rotation:
            v.set_display_rotation(rotation)
        if gop:
            v.gop_size = gop
            if codec == "libx264":
                v.options = {"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0"}
        v.pix_fmt = "yuv420p" if codec == "libx264" else "bgr0"
        a = c.add_stream("aac", rate=16000) if audio else None
        for p in pts:
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), format="rgb24")
            f.pts = p
            for packet in v.encode(f if v.pix_fmt == "rgb24" else f.reformat(format=v.pix_fmt)):
                c.mux(packet)
        for packet in v.encode(None):
            c.mux(packet)
        if a is not None:
            samples = (np.sin(np.arange(16000 * len(pts) // rate) / 10) * 0.3).astype(np.float32)[None]
            for k in range(0, samples.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(samples[:, k : k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, k
                for packet in a.encode(af):
                    c.mux(packet)
            for packet in a.encode(None):
                c.mux(packet)
    return path


def frames(path: Path):
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def audio_packets(path: Path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_video_keeps_frames_time_and_audio(tmp_path, small_model):
    src = make_clip(tmp_path / "clip.mp4", rotation=90)  # filmed upright on a phone
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(small_model)]) == 0
    dst = out / "clip.mp4"
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert (vb.codec_context.width, vb.codec_context.height) == (64, 48)
        assert vb.codec_context.name == "h264" and vb.codec_context.pix_fmt == "yuv420p"
        assert vb.average_rate == va.average_rate and abs((b.duration or 0) - (a.duration or 0)) <= 0.05e6
    assert [p for p, _ in frames(dst)] == [p for p, _ in frames(src)] and len(frames(dst)) == 12
    assert audio_packets(dst) == audio_packets(src) != []  # remuxed, not re-encoded
    with av.open(str(dst)) as b:
        assert next(b.decode(video=0)).rotation == 90  # the display matrix kept


def test_lossless_video_equals_frames_upscaled_as_images(tmp_path, small_model):
    """FFV1 in MKV (RGB): every output frame is what the image path gives for that frame,
    and variable time stamps stay as they were."""
    pts = [0, 1, 3, 4, 8, 9]
    src = make_clip(tmp_path / "vfr.mkv", pts=pts, codec="ffv1", audio=False, size=(30, 22))
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(small_model), "--video-codec", "ffv1"]) == 0
    up = Upscaler(small_model, device="cpu")
    got, ref = frames(out / "vfr.mkv"), frames(src)
    assert [p for p, _ in got] == [p for p, _ in ref] and len(got) == len(pts)  # MKV counts in ms: 0, 100, 300, ...
    assert len({b - a for (a, _), (b, _) in zip(ref, ref[1:], strict=False)}) > 1  # really variable
    for (_, g), (_, f) in zip(got, ref, strict=True):
        assert np.array_equal(g, up(f))


def test_bad_videos_fail_alone_in_one_line(tmp_path, small_model, capsys):
    good = make_clip(tmp_path / "good.mp4", pts=range(3))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(make_clip(tmp_path / "full.mp4").read_bytes()[:900])
    with av.open(str(tmp_path / "audio.mp4"), "w") as c:  # audio only
        a = c.add_stream("aac", rate=16000)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        for packet in [*a.encode(af), *a.encode(None)]:
            c.mux(packet)
    empty = make_clip(tmp_path / "empty.mp4", pts=[], audio=False)
    out = tmp_path / "out"
    args = ["upscale", str(cut), str(tmp_path / "audio.mp4"), str(empty), str(good), "-o", str(out)]
    assert main([*args, "--model", str(small_model)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(lines) == 3 and "Traceback" not in err, err
    assert any("cut.mp4" in line for line in lines) and any("audio only" in line for line in lines)
    assert any("empty.mp4" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]  # nothing half-written


def keyframes(path: Path) -> list[bool]:
    with av.open(str(path)) as c:
        return [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]


def test_segments_join_into_the_video_one_segment_gives(tmp_path, small_model):
    """Cut at the input's keyframes (every 4th frame here, segments of >= 4 frames), made
    one by one and joined without re-encoding: lossless, the frames, time stamps and audio
    are those of the same video made as one segment; the segments' folder is removed."""
    src = make_clip(tmp_path / "clip.mkv", pts=range(12), codec="ffv1", gop=4, size=(20, 16))
    assert keyframes(src) == [i % 4 == 0 for i in range(12)]
    outs = {}
    for frames_per_segment in (4, 1000):
        out = tmp_path / f"out{frames_per_segment}"
        args = ["upscale", str(src), "-o", str(out), "--model", str(small_model), "--video-codec", "ffv1"]
        assert main([*args, "--video-segment", str(frames_per_segment)]) == 0
        assert [p.name for p in out.iterdir()] == ["clip.mkv"]  # no segments left behind
        outs[frames_per_segment] = out / "clip.mkv"
    cut, whole = frames(outs[4]), frames(outs[1000])
    assert [p for p, _ in cut] == [p for p, _ in whole] == [p for p, _ in frames(src)]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(cut, whole, strict=True))
    assert audio_packets(outs[4]) == audio_packets(src) != []
    assert keyframes(outs[4]) == [i % 4 == 0 for i in range(12)] != keyframes(outs[1000])


@pytest.mark.slow
def test_killed_run_resumes_to_the_bytes_of_a_straight_run(tmp_path, small_model):
    """kill -9 part way, then the same command: the finished segments are kept and the
    result is, to the byte, what a run that was never killed writes (H.264)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = make_clip(tmp_path / "clip.mp4", pts=range(40), size=(192, 144), gop=4)
    args = ["upscale", str(src), "--model", str(small_model), "--video-segment", "4", "-o"]
    assert main([*args, str(tmp_path / "straight")]) == 0
    out = tmp_path / "resumed"
    run = subprocess.Popen([sys.executable, "-m", "seemore_sr", *args, str(out)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob(".clip.mp4.*.segments/00001.mov")) and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    kept = sorted(out.glob(".clip.mp4.*.segments/0*.mov"))
    assert len(kept) >= 2 and not (out / "clip.mp4").exists()  # killed part way
    stamps = {p.name: p.stat().st_mtime_ns for p in kept}
    seen = []
    import seemore_sr.inference.video as video

    made = video.encode_segment

    def spy(upscaler, plan, k, progress=None):
        seen.append(plan.part(k).name)
        return made(upscaler, plan, k, progress)

    video.encode_segment = spy
    try:
        assert main([*args, str(out)]) == 0
    finally:
        video.encode_segment = made
    every = sorted([*seen, *stamps])  # the kept ones were not made again, the others were
    assert every == [f"{k:05d}.mov" for k in range(len(every))] and len(every) >= 5
    assert (out / "clip.mp4").read_bytes() == (tmp_path / "straight" / "clip.mp4").read_bytes()
    assert len(frames(out / "clip.mp4")) == 40
