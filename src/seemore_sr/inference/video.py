"""Video in, video out: ``seemore upscale clip.mp4 -o OUT`` (needs the ``[video]`` extra, PyAV).

Frames are decoded one at a time, upscaled by the same :class:`~.upscaler.Upscaler` as
images (tiles for big frames, the engine shared), and encoded as they come, so memory
does not grow with the length. What a video person expects is kept:

- every frame, with its own time stamp (variable frame rates stay variable), the
  stream's time base, frame rate and so the duration;
- the audio streams, copied packet by packet without re-encoding (remuxed), and the
  subtitle streams where the output container takes them;
- the container's and the video stream's metadata (title, language) and its display
  rotation (the display matrix a phone writes).

Encoding: H.264 (``libx264``, yuv420p, ``crf`` 18 by default: visually lossless) or any
encoder FFmpeg has (``codec``); ``ffv1`` in MKV is lossless (RGB, ``bgr0``).

**Segments.** A video is cut into segments at the input's keyframes (:func:`plan_video`:
each at least ``segment_frames`` frames, from the packets alone, no decoding), each
segment is upscaled and encoded into its own file (:func:`encode_segment`, starting with
a keyframe), and the segments are joined without re-encoding (:func:`join_segments`),
with the audio and subtitles remuxed from the input. The cut depends on the input and
the options only, so:

- a killed run (even ``kill -9``) is resumed by running the same command: finished
  segments are kept in ``OUT/.NAME.KEY.segments/`` (``KEY`` names the input, weights and
  options, so a changed option never reuses them) and only the missing ones are made;
  the result is the file a run that was never killed writes, to the byte;
- under ``torchrun`` the segments of one video are shared among the ranks, and rank 0
  joins them (:mod:`seemore_sr.inference.batch`).

Each segment decodes from the keyframe before its own (frames of an open GOP can lean
on the previous one) and keeps its own frames by time stamp. A video whose packets have
no time stamps is one segment. A truncated file, an audio-only or 0-frame file, or a
codec FFmpeg cannot decode fails that file alone, in one line; the output is moved into
place only when complete.
"""

from __future__ import annotations

import glob
import hashlib
import heapq
import itertools
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .._fs import atomic_path
from ..errors import MissingExtra, Refused
from .inputs import VIDEO_SUFFIXES

__all__ = [
    "VIDEO_SUFFIXES",
    "SEGMENT_FRAMES",
    "is_video",
    "upscale_video",
    "plan_video",
    "VideoPlan",
    "encode_segment",
    "join_segments",
]

LOSSLESS = {"ffv1": "bgr0"}  # codec -> the RGB pixel format that keeps every value
# The encoder when none is asked for: H.264, except in WebM, which holds only VP8 / VP9 / AV1.
DEFAULT_CODEC = {".webm": "libvpx-vp9"}
# Containers whose output is written as Matroska instead (the same name, .mkv): AVI has no
# time stamps of its own (one tick a frame), so variable rates and B-frames cannot be kept.
REWRAP = {".avi": ".mkv"}
SEGMENT_FRAMES = 120  # a segment's least length (frames): the unit of resume and of sharing among ranks
_FORMATS = {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError:
        raise MissingExtra("video", "video upscaling") from None
    return av


@dataclass
class VideoPlan:
    """Where a video is cut: ``cuts[k]`` is the index (in decode order, among the video
    stream's packets) of segment ``k``'s first packet, a keyframe; ``pts`` the packets'
    time stamps (``None`` when some packet has none: one segment then)."""

    src: Path
    dst: Path
    codec: str
    crf: int
    frames: int
    cuts: list[int]
    pts: list[int] | None
    key: str = ""  # names the input, the weights and the options (the segments' folder)
    info: dict = field(default_factory=dict)  # time base, rate, size of the video stream
    # the segments' container: MOV keeps the stream's time base and negative decode times
    # (B-frames) as they are; Matroska for codecs MOV does not take
    container: str = "mov"

    @property
    def segments(self) -> int:
        return len(self.cuts)

    def span(self, k: int) -> tuple[int, int]:
        """Packet indices ``[start, end)`` of segment ``k``."""
        return self.cuts[k], self.cuts[k + 1] if k + 1 < len(self.cuts) else self.frames

    @property
    def folder(self) -> Path:
        return self.dst.parent / f".{self.dst.name}.{self.key}.segments"

    def part(self, k: int) -> Path:
        return self.folder / f"{k:05d}.{'mov' if self.container == 'mov' else 'mkv'}"

    def done(self, k: int) -> bool:
        return self.part(k).is_file()

    def sound(self, k: int) -> bool:
        """Whether segment ``k``'s file opens and holds the frames its span says (no decoding):
        a damaged or short part is not trusted because it exists."""
        if not self.done(k):
            return False
        av = _av()
        start, end = self.span(k)
        try:
            with av.open(str(self.part(k))) as part:
                n = sum(1 for p in part.demux(part.streams.video[0]) if p.size)
        except (av.error.FFmpegError, IndexError, OSError):
            return False
        return n == end - start


def _takes(av, fmt: str, codec: str) -> bool:
    """Whether container format ``fmt`` takes a stream of ``codec``."""
    import io

    with av.open(io.BytesIO(), "w", format=fmt) as c:
        try:
            c.add_stream(codec)
        except ValueError:
            return False
    return True


def check_codec(codec: str) -> None:
    """``codec`` is a video encoder FFmpeg has here (``Refused`` naming it otherwise)."""
    av = _av()
    try:
        c = av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        raise Refused(f"FFmpeg here has no {codec!r} encoder", remedy="video_codec") from None
    if c.type != "video":
        raise Refused(f"{codec!r} is an {c.type} encoder, not a video one", remedy="video_codec")


def output_for(src: Path, dst: Path, codec: str | None) -> tuple[Path, str]:
    """Where ``src``'s upscale goes and with which encoder, decided before any compute:
    ``dst`` (an AVI input's as ``.mkv``, :data:`REWRAP`) and ``codec`` (``None``: the
    container's default, :data:`DEFAULT_CODEC`). An encoder the container cannot hold is
    refused here, naming one it can."""
    av = _av()
    dst = dst.with_suffix(REWRAP.get(dst.suffix.lower(), dst.suffix))
    suffix = dst.suffix.lower()
    codec = codec or DEFAULT_CODEC.get(suffix, "libx264")
    check_codec(codec)
    fmt = _FORMATS.get(suffix, "mp4")
    if not _takes(av, fmt, codec):
        fits = DEFAULT_CODEC.get(suffix, "libx264")
        raise Refused(
            f"a {suffix} file cannot hold {codec} video; use --video-codec {fits}, or an .mkv output",
            remedy="video_codec",
        )
    return dst, codec


def _open(av, src: Path):
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise Refused(f"not a readable video ({e})") from None
    if not inp.streams.video:
        inp.close()
        raise Refused("no video stream (audio only?); nothing to upscale")
    if inp.streams.video[0].codec_context.codec is None:
        inp.close()
        raise Refused("its video codec is not one FFmpeg here can decode")
    return inp


def _fingerprint(upscaler, src: Path, options: dict) -> str:
    """A short hash of what decides a segment's bytes: the input file, the weights, the
    engine's choices and the encoding options."""
    from .. import __version__

    h = hashlib.sha256()
    st = src.stat()
    engine = getattr(upscaler, "engine", None)
    h.update(json.dumps([str(src.resolve()), st.st_size, st.st_mtime_ns, __version__, options]).encode())
    h.update(
        json.dumps(
            [
                str(getattr(engine, "precision", "")),
                str(getattr(engine, "executor", "")),
                str(getattr(upscaler, "tile", "")),
                str(getattr(upscaler, "outscale", "")),
                str(getattr(upscaler, "scale", "")),
                str(getattr(engine, "mirror", "")),
            ]
        ).encode()
    )
    model = getattr(engine, "model", None)
    if model is not None:
        import torch

        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def plan_video(
    upscaler,
    src: Path,
    dst: Path,
    *,
    codec: str = "libx264",
    crf: int = 18,
    segment_frames: int = SEGMENT_FRAMES,
    check_frame: Callable[[tuple[int, int]], None] | None = None,
) -> VideoPlan:
    """Where ``src`` is cut into segments (module docstring): read from its packets, no decoding.
    ``check_frame((width, height))`` may refuse the frame size (limits) before anything is decoded.
    A file with fewer packets than its header declares is refused (truncated)."""
    av = _av()
    check_codec(codec)
    if not isinstance(segment_frames, int) or segment_frames < 1:
        raise Refused(f"segment length must be a positive number of frames, got {segment_frames!r}")
    with _open(av, src) as inp:
        vin = inp.streams.video[0]
        pts: list[int] | None = []
        keys: list[bool] = []
        try:
            for packet in inp.demux(vin):
                if packet.size == 0:
                    continue
                keys.append(packet.is_keyframe)
                if pts is not None:
                    if packet.pts is None:
                        pts = None
                    else:
                        pts.append(packet.pts)
        except av.error.FFmpegError as e:
            raise Refused(f"unreadable or truncated video ({e})") from None
        if not keys:
            raise Refused("no frames to upscale (an empty video)")
        renumber = inp.format.name == "avi"  # AVI has no time stamps: FFmpeg's guesses break B-frame order
        cuts = [0]
        if pts is not None and len(set(pts)) == len(pts) and not renumber:
            for i, key in enumerate(keys):
                if key and i - cuts[-1] >= segment_frames:
                    cuts.append(i)
        else:
            pts = None
        s = upscaler.outscale or upscaler.scale
        w, h = vin.codec_context.width, vin.codec_context.height
        if check_frame is not None:
            check_frame((w, h))  # the pixel limit and the output's memory, before any frame is decoded
        shortfall = _shortfall(inp, vin, pts, len(keys))
        if shortfall:
            raise Refused(f"a truncated or damaged video: {shortfall}")
        auto = getattr(upscaler, "auto", False)  # denoise "auto": decided once, from the first frames
        first_segment = cuts[1] if len(cuts) > 1 else len(keys)
        first = _first_frames(av, src, min(DENOISE_FRAMES, first_segment) if auto else 1)  # one decode for both
        info = {
            "time_base": vin.time_base,
            "rate": vin.average_rate or vin.guessed_rate,
            "width": max(2, round(w * s)) // 2 * 2,
            "height": max(2, round(h * s)) // 2 * 2,
            # the display rotation (degrees, counter-clockwise) of the first frame: the stream's
            # display matrix, which FFmpeg keeps as side data, not as a metadata tag
            "rotation": int(getattr(first[0], "rotation", 0) or 0) if first else 0,
            "renumber": renumber,  # frames get 0, 1, 2... in presentation order (AVI: a constant rate)
            "size": (w, h),  # every frame's: a size change mid-stream is refused when met
            "dropped": _dropped(av, vin.codec_context.pix_fmt, codec),  # depth / alpha the output cannot keep
        }
        if renumber:
            info["time_base"] = 1 / Fraction(info["rate"])
    options = {"codec": codec, "crf": crf, "segment_frames": segment_frames}
    # MOV keeps any time base; VP8 / VP9 / AV1 (WebM's) are Matroska's own (MOV takes them, then fails to write)
    webm_codec = codec.startswith(("libvpx", "libaom", "libsvtav1"))
    container = "mov" if _takes(av, "mov", codec) and not webm_codec else "matroska"
    plan = VideoPlan(src, dst, codec, crf, len(keys), cuts, pts, info=info, container=container)
    if auto:
        upscaler = upscaler.decided([f.to_ndarray(format="rgb24") for f in first])
        plan.info["denoise"] = upscaler.estimate
    plan.key = _fingerprint(upscaler, src, options)
    return plan


DENOISE_FRAMES = 8  # denoise "auto" on a video: the median strength of its first frames


def _shortfall(inp, vin, pts: list[int] | None, packets: int) -> str:
    """What a cut file lacks, by what its header declares: the stream's frame count, or its
    duration (the stream's, else the container's when it holds no other stream); "" if whole."""
    if vin.frames and packets < vin.frames:
        return f"{packets} of the {vin.frames} frames its header declares"
    if not pts or vin.average_rate is None:
        return ""
    frame = 1 / Fraction(vin.average_rate)
    span = (max(pts) - min(pts)) * vin.time_base + frame
    if vin.duration:
        declared = vin.duration * vin.time_base
    elif inp.duration and len(inp.streams) == 1:
        declared = Fraction(inp.duration, 1_000_000)
    else:
        return ""
    if span < declared * Fraction(9, 10) - frame:
        return f"frames for {float(span):.2f} s of the {float(declared):.2f} s its header declares"
    return ""


def _dropped(av, pix_fmt: str | None, codec: str) -> str:
    """What the output's pixel format cannot keep of the input's (depth, alpha), in words; "" if nothing."""
    if not pix_fmt:
        return ""
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, TypeError):
        return ""
    lost = []
    bits = max((c.bits for c in fmt.components), default=8)
    if bits > 8:
        lost.append(f"{bits}-bit depth")
    if any(getattr(c, "is_alpha", False) for c in fmt.components):
        lost.append("alpha")
    if not lost:
        return ""
    kept = LOSSLESS.get(codec, "yuv420p")
    return f"{' and '.join(lost)} of its {pix_fmt} frames not kept (written as 8-bit {kept})"


def _first_frames(av, src: Path, n: int) -> list:
    """The first ``n`` decoded frames of ``src`` (fewer if it has fewer; none if they cannot
    be decoded: a damaged file fails when its segments are decoded, with the frame it fails at)."""
    out = []
    try:
        with av.open(str(src)) as inp:
            for frame in inp.decode(video=0):
                out.append(frame)
                if len(out) >= n:
                    break
    except av.error.FFmpegError:
        pass
    return out


def _segment_frames(av, plan: VideoPlan, k: int) -> Iterator:
    """Segment ``k``'s decoded frames in presentation order: decoding starts at the previous
    segment's keyframe, and the frames kept are those whose time stamps are this segment's."""
    start, end = plan.span(k)
    first = plan.cuts[k - 1] if k > 0 else 0
    keep = None if plan.pts is None else set(plan.pts[start:end])
    with av.open(str(plan.src)) as inp:
        vin = inp.streams.video[0]
        decoder = vin.codec_context
        for i, packet in _packets(av, inp, vin, plan, first):
            if i < first:
                continue
            if i >= end:
                break
            yield from _kept(decoder.decode(packet), keep, vin.time_base)
        yield from _kept(decoder.decode(None), keep, vin.time_base)


def _packets(av, inp, vin, plan: VideoPlan, first: int) -> Iterator:
    """``(index, packet)`` of the video stream's packets (decode order, empty ones left out),
    starting at a keyframe at or before packet ``first``: a seek, not a re-read of the file
    from its start for every segment. From the start when the packets have no time stamps,
    or when the seek lands somewhere the plan does not know."""
    if first > 0 and plan.pts is not None:
        index = {p: n for n, p in enumerate(plan.pts)}
        head, packets = None, iter(())
        try:
            inp.seek(plan.pts[first], stream=vin, backward=True, any_frame=False)
            packets = (p for p in inp.demux(vin) if p.size)
            head = next(packets, None)
        except av.error.FFmpegError:
            head = None
        at = index.get(head.pts) if head is not None else None
        if at is not None and at <= first:
            yield at, head
            yield from enumerate(packets, at + 1)
            return
        inp.seek(0, stream=vin, backward=True, any_frame=False)
    yield from enumerate(p for p in inp.demux(vin) if p.size)


def _kept(frames, keep: set[int] | None, time_base) -> Iterator:
    for frame in frames:
        if keep is None or frame.pts in keep:
            frame.time_base = time_base
            yield frame


def encode_segment(upscaler, plan: VideoPlan, k: int, progress: Callable[[int], None] | None = None) -> int:
    """Upscale and encode segment ``k`` into its part file (moved into place when complete);
    returns its frames."""
    av = _av()
    start, end = plan.span(k)
    if plan.info.get("denoise") is not None and getattr(upscaler, "auto", False):
        upscaler = upscaler.fixed(plan.info["denoise"])  # the strength the plan decided for the whole video
    plan.folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with atomic_path(plan.part(k)) as tmp:
        with av.open(str(tmp), "w", format=plan.container) as out:
            vout = out.add_stream(plan.codec, rate=plan.info["rate"])
            # every time stamp kept exactly: the encoder counts in the input stream's time base
            # (1 / the average rate made a screen recording's close frames collide)
            vout.codec_context.time_base = vout.time_base = plan.info["time_base"]
            vout.width, vout.height = plan.info["width"], plan.info["height"]
            vout.pix_fmt = LOSSLESS.get(plan.codec, "yuv420p")
            if plan.codec == "libx264":
                # one encoder thread: the same bytes on every run (frame threads varied); no
                # B-frames: decode order is presentation order, so any time base holds the
                # stamps (AVI's one tick a frame, bursts of frames one tick apart)
                vout.options = {"crf": str(plan.crf), "preset": "medium", "threads": "1", "bframes": "0"}
            elif plan.codec == "libvpx-vp9":  # one thread, constant quality from --crf (0..63)
                vout.options = {"crf": str(plan.crf), "b": "0", "threads": "1", "row-mt": "0"}
            try:
                framed = None  # the pixels mirrored around the frames: the segment's first frame decides
                for frame in _segment_frames(av, plan, k):
                    if framed is None:
                        framed = upscaler.framed_like(frame.to_ndarray(format="rgb24"))
                    if plan.info.get("renumber"):
                        frame.pts, frame.time_base = written, plan.info["time_base"]
                    out.mux(vout.encode(_upscaled(av, framed, frame, vout, plan.info.get("size"))))
                    written += 1
                    if progress is not None:
                        progress(written)
            except av.error.FFmpegError as e:
                raise Refused(f"unreadable or truncated video near frame {start + written} ({e})") from None
            out.mux(vout.encode(None))
        if written != end - start:
            raise Refused(
                f"segment {k} decoded to {written} frames, not the {end - start} its packets hold "
                "(a damaged or truncated video)"
            )
    return written


def _video_packets(av, plan: VideoPlan) -> Iterator:
    for k in range(plan.segments):
        with av.open(str(plan.part(k))) as part:
            for packet in part.demux(part.streams.video[0]):
                if packet.size:
                    yield packet


def join_segments(plan: VideoPlan, *, replace: bool = False) -> int:
    """Join the finished segments into ``plan.dst`` without re-encoding, the input's audio
    and subtitles remuxed beside them; returns the frames written. Removes the segments,
    and those that other inputs or options left for the same output."""
    av = _av()
    missing = [k for k in range(plan.segments) if not plan.done(k)]
    if missing:
        raise Refused(f"segments {missing[:5]} of {plan.segments} are not done; run the same command again")
    bad = [k for k in range(plan.segments) if not plan.sound(k)]
    for k in bad:
        plan.part(k).unlink(missing_ok=True)  # remade by the next run
    if bad:
        raise Refused(f"segments {bad[:5]} were damaged or short and are removed; run the same command again")
    frames = 0
    with _open(av, plan.src) as inp, av.open(str(plan.part(0))) as first:
        vin = inp.streams.video[0]
        copied = [s for s in inp.streams if s.type in ("audio", "subtitle")]
        with atomic_path(plan.dst, replace=replace) as tmp:
            fmt = _FORMATS.get(plan.dst.suffix.lower(), "mp4")
            with av.open(str(tmp), "w", format=fmt) as out:
                out.metadata.update(inp.metadata)
                vout = out.add_stream_from_template(first.streams.video[0])
                vout.time_base = plan.info["time_base"]  # the input stream's (AVI: 1 / its rate)
                vout.metadata.update(vin.metadata)
                if plan.info.get("rotation"):  # the display matrix: the players' rotation
                    vout.set_display_rotation(plan.info["rotation"])
                remux = {}
                for stream in copied:
                    try:
                        remux[stream.index] = out.add_stream_from_template(stream)
                    except (ValueError, av.error.FFmpegError):
                        if stream.type == "audio":  # audio must survive; subtitles may not fit the container
                            name = stream.codec_context.name
                            raise Refused(f"{fmt} cannot hold its {name} audio; use .mkv") from None
                order = itertools.count()  # ties keep their order

                def timed(packets, rank):
                    for p in packets:
                        t = p.dts if p.dts is not None else p.pts
                        if t is None:
                            continue
                        yield (Fraction(t) * p.time_base, rank, next(order), p)

                others = (p for p in inp.demux(*copied) if p.stream.index in remux) if copied else iter(())
                last_dts = None
                for _, _, _, packet in heapq.merge(timed(_video_packets(av, plan), 0), timed(others, 1)):
                    if packet.stream.type == "video":
                        if last_dts is not None and packet.dts is not None and packet.dts <= last_dts:
                            packet.dts = last_dts + 1  # segments meet: keep the decode times increasing
                        last_dts = packet.dts
                        packet.stream = vout
                        frames += 1
                    else:
                        packet.stream = remux[packet.stream.index]
                    out.mux(packet)
    for folder in plan.dst.parent.glob(f".{glob.escape(plan.dst.name)}.*.segments"):  # its own, and other options'
        shutil.rmtree(folder, ignore_errors=True)
    return frames


def upscale_video(
    upscaler,
    src: Path,
    dst: Path,
    *,
    codec: str | None = None,
    crf: int = 18,
    replace: bool = False,
    segment_frames: int = SEGMENT_FRAMES,
    progress: Callable[[int, int], None] | None = None,
    check_frame: Callable[[tuple[int, int]], None] | None = None,
) -> VideoPlan:
    """Upscale ``src`` into ``dst`` in one process (module docstring): the segments a killed
    run left are kept, the others made, then joined. Returns the plan (its ``frames``, and
    ``info["denoise"]``: the strength ``auto`` chose)."""
    dst, codec = output_for(src, dst, codec)
    plan = plan_video(upscaler, src, dst, codec=codec, crf=crf, segment_frames=segment_frames, check_frame=check_frame)
    run_segments(upscaler, plan, range(plan.segments), progress=progress)
    join_segments(plan, replace=replace)
    return plan


def run_segments(upscaler, plan: VideoPlan, which, progress: Callable[[int, int], None] | None = None) -> None:
    """Make the segments ``which`` of ``plan`` that are not done yet."""
    # A killed run's half-written segment (a ``.part`` file) stays until the join removes the
    # folder: under torchrun a live rank on another machine may own one (its PID means nothing here).
    sound = {k for k in range(plan.segments) if plan.sound(k)}  # each part opened once here
    done = sum(plan.span(k)[1] - plan.span(k)[0] for k in sound)
    try:
        for k in which:
            if k in sound:
                continue
            plan.part(k).unlink(missing_ok=True)  # a damaged or short segment a run left: made again
            report = None if progress is None else lambda n, base=done: progress(base + n, plan.frames)
            encode_segment(upscaler, plan, k, report)
            done += plan.span(k)[1] - plan.span(k)[0]
    except BaseException:
        if plan.folder.is_dir() and not any(plan.folder.iterdir()):
            plan.folder.rmdir()  # nothing finished to keep
        raise


def _upscaled(av, upscaler, frame, vout, size: tuple[int, int] | None = None):
    """One decoded frame, upscaled, as a frame for ``vout`` with the input's time stamp;
    a frame of another size than ``size`` (the stream's first) is refused."""
    if size is not None and (frame.width, frame.height) != tuple(size):
        raise Refused(
            f"the frame size changes mid-stream ({size[0]}x{size[1]} to {frame.width}x{frame.height} at time "
            f"{float(frame.pts * frame.time_base) if frame.pts is not None else '?'} s); re-encode it at one size"
        )
    rgb = frame.to_ndarray(format="rgb24")
    up = upscaler(rgb)
    if up.shape[:2] != (vout.height, vout.width):  # odd sizes: yuv420p needs even sides
        up = np.ascontiguousarray(up[: vout.height, : vout.width])
    new = av.VideoFrame.from_ndarray(up, format="rgb24")
    if vout.pix_fmt != "rgb24":
        new = new.reformat(format=vout.pix_fmt)
    new.pts, new.time_base = frame.pts, frame.time_base
    return new
