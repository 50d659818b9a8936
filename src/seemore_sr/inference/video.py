"""Video in, video out: ``seemore upscale clip.mp4 -o OUT`` (needs the ``[video]`` extra, PyAV).

Frames are decoded one at a time, upscaled by the same :class:`~.upscaler.Upscaler` as
images (tiles for big frames, the engine shared), and encoded as they come, so memory
does not grow with the length. What a video person expects is kept:

- every frame, with its own time stamp (variable frame rates stay variable), the
  stream's time base, frame rate and so the duration;
- the audio streams, copied packet by packet without re-encoding (remuxed), and the
  subtitle streams where the output container takes them;
- the container's and the video stream's metadata (title, rotation tag, language).

Encoding: H.264 (``libx264``, yuv420p, ``crf`` 18 by default: visually lossless) or any
encoder FFmpeg has (``codec``); ``ffv1`` in MKV is lossless (RGB, ``bgr0``). The output is
written to a temporary file and moved into place when complete. A truncated file, an
audio-only or 0-frame file, or a codec FFmpeg cannot decode fails that file alone, in one
line. Not yet: resuming a killed run part way (a rerun starts the file again) and
splitting one video across ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._fs import atomic_path
from ..errors import MissingExtra, Refused

__all__ = ["VIDEO_SUFFIXES", "is_video", "upscale_video"]

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm"}
LOSSLESS = {"ffv1": "bgr0"}  # codec -> the RGB pixel format that keeps every value


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError:
        raise MissingExtra("video", "video upscaling") from None
    return av


def upscale_video(
    upscaler,
    src: Path,
    dst: Path,
    *,
    codec: str = "libx264",
    crf: int = 18,
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Upscale ``src`` into ``dst`` (see the module docstring); returns the frames written."""
    av = _av()
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        raise Refused(f"FFmpeg here has no {codec!r} encoder", remedy="video_codec") from None
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise Refused(f"not a readable video ({e})") from None
    with inp:
        if not inp.streams.video:
            raise Refused("no video stream (audio only?); nothing to upscale")
        vin = inp.streams.video[0]
        if vin.codec_context.codec is None:
            raise Refused("its video codec is not one FFmpeg here can decode")
        copied = [s for s in inp.streams if s.type in ("audio", "subtitle")]
        total = vin.frames or 0
        written = 0
        with atomic_path(dst, replace=replace) as tmp:
            fmt = {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}.get(dst.suffix.lower(), "mp4")
            with av.open(str(tmp), "w", format=fmt) as out:
                out.metadata.update(inp.metadata)
                vout = out.add_stream(codec, rate=vin.average_rate or vin.guessed_rate)
                vout.time_base = vin.time_base
                vout.metadata.update(vin.metadata)
                s = upscaler.outscale or upscaler.scale
                w, h = vin.codec_context.width, vin.codec_context.height
                vout.width, vout.height = max(2, round(w * s)) // 2 * 2, max(2, round(h * s)) // 2 * 2
                vout.pix_fmt = LOSSLESS.get(codec, "yuv420p")
                if codec == "libx264":  # one encoder thread: the same bytes on every run (frame threads varied)
                    vout.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
                remux = {}
                for stream in copied:
                    try:
                        remux[stream.index] = out.add_stream_from_template(stream)
                    except (ValueError, av.error.FFmpegError):
                        if stream.type == "audio":  # audio must survive; subtitles may not fit the container
                            raise Refused(
                                f"{fmt} cannot hold its {stream.codec_context.name} audio; use .mkv"
                            ) from None
                try:
                    for packet in inp.demux(vin, *copied):
                        if packet.stream.index in remux:
                            if packet.dts is None:
                                continue
                            packet.stream = remux[packet.stream.index]
                            out.mux(packet)
                            continue
                        for frame in packet.decode():
                            out.mux(vout.encode(_upscaled(av, upscaler, frame, vout)))
                            written += 1
                            if progress is not None:
                                progress(written, max(total, written))
                except av.error.FFmpegError as e:
                    raise Refused(f"unreadable or truncated video after {written} frames ({e})") from None
                out.mux(vout.encode(None))
            if written == 0:
                raise Refused("no frames to upscale (an empty video)")
    return written


def _upscaled(av, upscaler, frame, vout):
    """One decoded frame, upscaled, as a frame for ``vout`` with the input's time stamp."""
    rgb = frame.to_ndarray(format="rgb24")
    up = upscaler(rgb)
    if up.shape[:2] != (vout.height, vout.width):  # odd sizes: yuv420p needs even sides
        up = np.ascontiguousarray(up[: vout.height, : vout.width])
    new = av.VideoFrame.from_ndarray(up, format="rgb24")
    if vout.pix_fmt != "rgb24":
        new = new.reformat(format=vout.pix_fmt)
    new.pts, new.time_base = frame.pts, frame.time_base
    return new
