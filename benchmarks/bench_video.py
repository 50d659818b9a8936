"""Video throughput: frames per second of ``seemore upscale clip.mp4`` against the same frames
upscaled as PNG files one by one (the same model, threads and machine, one process).

    python benchmarks/bench_video.py [--frames 24] [--json F]

Two clips of random-texture frames made with PyAV (H.264, 24 fps, with no audio): 640x360
upscaled x2 and 320x180 upscaled x4 (both 720p out), bundled SeemoRe-T weights, fp32. The
video path decodes, upscales and encodes (libx264, crf 18); the PNG path writes the frames as
PNG files first (not timed), then runs ``upscale_files`` over the folder (decode, upscale,
encode PNG). Frames per second = frames / wall seconds.

Frame batching (``--batch N``, default 4): the engine on N frames at once, as one
``(N, 3, H, W)`` tensor, against the same N frames one at a time (network only, no
decoding or encoding; 3 interleaved rounds, each path's fastest): whether batching frames
would pay on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seemore_sr.bench import cpu_description
from seemore_sr.inference.batch import upscale_files
from seemore_sr.inference.upscaler import Upscaler


def make_clip(path: Path, w: int, h: int, frames: int) -> list[np.ndarray]:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    out = []
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = np.roll(base, 2 * i, axis=1)
            out.append(img)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--json")
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    from PIL import Image

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for (w, h), scale in (((640, 360), 2), ((320, 180), 4)):
            up = Upscaler(f"seemore-tiny-x{scale}", device="cpu")
            clip = tmp / f"clip{scale}.mp4"
            frames = make_clip(clip, w, h, args.frames)
            pngs = tmp / f"png{scale}"
            pngs.mkdir()
            for i, f in enumerate(frames):
                Image.fromarray(f).save(pngs / f"{i:04d}.png")
            up(frames[0])  # warm-up: the executor's calibration and oneDNN's primitives
            t = time.perf_counter()
            upscale_files(up, [clip], tmp / f"out{scale}", progress=False, log=lambda m: None)
            video_s = time.perf_counter() - t
            t = time.perf_counter()
            upscale_files(up, sorted(pngs.iterdir()), tmp / f"outpng{scale}", progress=False, log=lambda m: None)
            png_s = time.perf_counter() - t
            x = torch.from_numpy(np.stack(frames[: args.batch])).permute(0, 3, 1, 2).float().div(255)
            times = {"batched": [], "one at a time": []}
            for _ in range(3):
                t = time.perf_counter()
                up.run(x)
                times["batched"].append(time.perf_counter() - t)
                t = time.perf_counter()
                for i in range(len(x)):
                    up.run(x[i : i + 1])
                times["one at a time"].append(time.perf_counter() - t)
            rows[f"{w}x{h} x{scale}"] = {"video_fps": args.frames / video_s, "png_fps": args.frames / png_s,
                                         "executor": up.engine.executor,
                                         "batched_fps": len(x) / min(times["batched"]),
                                         "single_fps": len(x) / min(times["one at a time"])}  # fmt: skip
    print(f"# {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {args.frames} frames")
    for k, r in rows.items():
        print(f"{k:<14} video {r['video_fps']:.2f} fps   PNG files {r['png_fps']:.2f} fps   [{r['executor']}]")
        print(f"{'':<14} network only: {args.batch} frames batched {r['batched_fps']:.2f} fps, "
              f"one at a time {r['single_fps']:.2f} fps")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": cpu_description(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
