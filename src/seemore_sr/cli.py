"""The ``seemore`` command line: profile, convert, upscale, serve, eval, train, export, explain, plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UsageError

__all__ = ["main"]

# data.degrade.PRESETS's and inference.executors.EXECUTORS's names, here so that argument
# parsing does not import torch (a test checks the copies)
DEGRADE_PRESETS = ("clean", "jpeg50", "jpeg70", "jpeg90", "noise5", "noise10", "mixed")
EXECUTORS = ("nhwc-fused", "nhwc-fused-ln", "nhwc", "nchw-cl", "nchw")


def _override_args(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --override {item!r}: expected field=value")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from . import bundled_weights, create_model, list_models, load_model
    from .models.complexity import count_params, paper_input_size, profile_macs, profile_macs_range

    overrides = _override_args(args.override)
    if args.model in list_models() and args.model not in bundled_weights():
        model = create_model(args.model, **overrides)  # counts do not depend on weights
    else:
        model = load_model(args.model, **overrides)
    cfg = model.config
    h, w = paper_input_size(cfg.scale, args.width, args.height)
    lo, hi = profile_macs_range(model, args.width, args.height)
    print(f"model       {args.model}  ({cfg.num_layers} layers, C={cfg.embedding_dim}, x{cfg.scale})")
    print(f"params      {count_params(model) / 1e3:.1f}K")
    print(
        f"GMACs       {profile_macs(model, args.width, args.height) / 1e9:.1f} (input {w}x{h} -> "
        f"output {args.width}x{args.height}; middle expert; {lo / 1e9:.2f}..{hi / 1e9:.2f} across experts)"
    )
    if args.latency:
        from .bench import measure
        from .inference.engine import resolve_device

        lh, lw = args.input_size or (h, w)
        dev = resolve_device(args.device)
        if dev.type == "cpu":
            from .bench import cpu_description

            print(f"cpu         {cpu_description()}, {torch.get_num_threads()} threads")
        from .inference.fast import optimize

        print(f"preparing   optimize() on {dev} (measures its executors on first use)...", flush=True)
        fast = optimize(model.to(dev))
        print(f"executor    {getattr(fast, 'executor', type(fast).__name__)} (chosen by optimize)")
        print(f"timing      {args.repeats} runs after a warm-up...", flush=True)
        res = measure(fast, (1, cfg.in_chans, lh, lw), dev, repeats=args.repeats)
        print(f"latency     {res['median_ms']:.1f} ms median over {args.repeats} runs on {dev} ({lw}x{lh} input)")
        if res.get("peak_mb") is not None:
            print(f"peak memory {res['peak_mb']:.0f} MB")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .models.checkpoint import load_checkpoint, save_model

    if Path(args.output).exists() and not args.overwrite:
        raise FileExistsError(f"{args.output}: exists (pass --overwrite to replace it)")
    model = load_checkpoint(args.input, **_override_args(args.override))
    try:
        out = save_model(model, args.output, converted_from=str(args.input), **getattr(model, "provenance", {}))
    except OSError as e:  # disk full, read-only folder: the temporary file is already removed
        raise UsageError(f"{args.output}: cannot write ({e.strerror or e}); nothing was written") from None
    cfg = model.config
    print(f"wrote {out}: seemore {cfg.num_layers} layers, C={cfg.embedding_dim}, x{cfg.scale}")
    return 0


def _paper_method(model: str, variant_scale: tuple[str, int] | None) -> str | None:
    if model == "bicubic":
        return "Bicubic"
    if variant_scale:
        return {"tiny": "SeemoRe-T", "large": "SeemoRe-L"}.get(variant_scale[0])
    return None


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.model == "bicubic" and args.scale is None:  # said before torch loads
        raise UsageError("bicubic needs --scale 2, 3 or 4")
    absent = [d for d in args.data if not Path(d).is_dir()]
    if absent:
        raise UsageError(f"no such data folder: {', '.join(absent)}")
    set_threads(args)
    from . import load_model
    from .evaluation.evaluate import evaluate, paper_numbers, write_csv, write_json
    from .inference.upscaler import Upscaler
    from .models.registry import variant_of

    if args.model == "bicubic":
        if args.scale is None:
            raise UsageError("bicubic needs --scale 2, 3 or 4")
        method, variant = "bicubic", None
    else:
        model = load_model(args.model)
        if args.scale is None:
            args.scale = model.config.scale
        if model.config.scale != args.scale:
            raise UsageError(f"{args.model} is a x{model.config.scale} model, but --scale {args.scale} was asked")
        cfg = model.config
        variant = variant_of(cfg.num_layers, cfg.embedding_dim)
        tile: int | str = "auto" if args.tile is None else args.tile
        if args.denoise is not None or (args.model.endswith("-real") and not Path(args.model).exists()):
            model = args.model  # the blend is made from the bundled weights; a -real name: auto, as upscale does
        method = Upscaler(model, device=args.device, tile=tile, mirror=args.mirror, denoise=args.denoise)
    results = evaluate(
        method,
        args.data,
        args.scale,
        save_images=args.save_images,
        progress=not args.no_progress and sys.stderr.isatty(),
        log=lambda m: print(m, file=sys.stderr),
        degrade=args.degrade,
    )
    paper = {}
    if args.compare_paper:
        name = _paper_method(args.model, (variant, args.scale) if variant else None)
        paper = paper_numbers(name, args.scale) if name else {}
        if not paper:
            print(f"note: no paper numbers for {args.model} at x{args.scale}", file=sys.stderr)
    head = f"{'dataset':<10} {'PSNR':>8} {'SSIM':>8} {'images':>6}"
    if paper:
        head += f" {'paper PSNR':>11} {'paper SSIM':>11}"
    deg = "" if args.degrade == "clean" else f", LR degraded: {args.degrade}"
    if getattr(method, "auto", False) or args.denoise is not None:
        deg += f", denoise {'auto' if getattr(method, 'auto', False) else args.denoise}"
    print(f"{args.model} x{args.scale} (Y channel, crop {args.scale}{deg})")
    print(head)
    for r in results:
        s = r.summary()
        if not s["images"]:
            print(f"{r.name:<10} {'-':>8} {'-':>8} {0:>6}")
            continue
        line = f"{r.name:<10} {s['psnr']:>8.3f} {s['ssim']:>8.4f} {s['images']:>6}"
        p = paper.get(r.name.lower())
        if p:
            line += f" {p['psnr']:>11.2f} {p['ssim']:>11.4f}"
        print(line)
    if args.json:
        write_json(results, args.json)
    if args.csv:
        write_csv(results, args.csv)
    failures = sum(len(r.errors) for r in results)
    if failures:
        print(f"{failures} problem(s): see the messages above", file=sys.stderr)
    return 1 if failures else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .errors import require

    require("onnx", "ONNX export", "onnx", "onnxscript")  # before the model loads
    from . import load_model
    from .inference.export import export_onnx

    model = load_model(args.model)
    out = export_onnx(model, args.output, opset=args.opset)
    print(
        f"wrote {out} (dynamic batch/height/width; routing computed in the graph; min side {model.config.min_size}px)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .errors import OptionError
    from .training.config import load_config
    from .training.trainer import train

    if args.threads:
        args.set = [*args.set, f"train.threads={args.threads}"]
    cfg = load_config(args.recipe, args.set)
    limit = args.max_minutes * 60 if args.max_minutes is not None else None
    try:
        result = train(cfg, args.run, progress=not args.no_progress, time_limit=limit)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError as e:  # a read-only or full run folder: every file there is written atomically
        why = e.strerror or str(e)
        raise OptionError("run", args.run, f"cannot write the run folder ({why}); nothing in it was changed") from None
    best = result["best_psnr"]
    if best != float("-inf"):
        val = Path(cfg.data.val).name
        print(f"done: iteration {result['iteration']}, best {val} PSNR {best:.3f} dB at {result['best_iter']}")
    elif cfg.data.val:
        print(f"done: iteration {result['iteration']} (not validated yet: every {cfg.train.val_every} iterations)")
    else:
        print(f"done: iteration {result['iteration']} (no validation set: data.val is null)")
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .inference.inputs import INPUT_SUFFIXES, VIDEO_SUFFIXES, collect_inputs  # torch-free

    notes: list[str] = []
    files, missing, subdirs = collect_inputs(args.inputs, args.recursive, notes)
    if not files:  # nothing to do: said before torch and the weights load (and no output folder made)
        for item, why in missing:
            print(f"failed: {item}: {why}", file=sys.stderr)
        print(f"0 done, 0 skipped, {len(missing)} failed: no inputs to upscale", file=sys.stderr)
        return 1
    output, name = Path(args.output), None
    if output.suffix.lower() in INPUT_SUFFIXES and not output.is_dir():  # -o result.png: that file
        if len(files) != 1:
            raise UsageError(f"-o {args.output} names one file, but {len(files)} inputs were given; give a folder")
        if (output.suffix.lower() in VIDEO_SUFFIXES) != (files[0].suffix.lower() in VIDEO_SUFFIXES):
            raise UsageError(f"-o {args.output}: an image and a video cannot be written as each other")
        output, name = output.parent, output.name
    if any(f.suffix.lower() in VIDEO_SUFFIXES for f in files):
        from .errors import require

        require("video", "video upscaling", "av")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    set_threads(args)

    from . import bundled_weights
    from .inference.batch import join_videos, shown, upscale_files
    from .inference.upscaler import Upscaler

    model = args.model or f"seemore-tiny-x{args.scale or 4}"
    if args.scale and model in bundled_weights():
        from .models.registry import parse_name

        if parse_name(model)[1] != args.scale:
            raise UsageError(f"--model {model} is x{parse_name(model)[1]}, but --scale {args.scale} was asked")
    from .inference.distributed import gather
    from .inference.distributed import ranks as torchrun_ranks

    ranks = torchrun_ranks()  # under torchrun: this rank's share of the work, its own device
    share = (0, 1)
    if ranks is not None:
        rank, world, device = ranks
        share = (rank, world)
        missing = missing if rank == 0 else []
        args.device = device if args.device == "auto" else args.device
    for item, why in missing:
        print(f"failed: {shown(item)}: {why}", file=sys.stderr)
    tile: int | str = "auto" if args.tile is None else args.tile
    upscaler = Upscaler(
        model,
        device=args.device,
        precision=args.precision,
        tile=tile,
        outscale=args.outscale,
        backend=args.backend,
        executor=args.executor,
        progress=not args.no_progress,
        force_precision=args.force_precision,
        mirror=args.mirror,
        denoise=args.denoise,
    )
    existing = "overwrite" if args.overwrite else "skip" if args.skip_existing else "error"
    summary = upscale_files(
        upscaler,
        files,
        output,
        name=name,
        suffix=args.suffix,
        fmt=args.format,
        quality=args.quality,
        video_options={"codec": args.video_codec, "crf": args.crf, "segment_frames": args.video_segment},
        existing=existing,
        progress=not args.no_progress and sys.stderr.isatty(),
        log=lambda m: print(m, file=sys.stderr),
        max_pixels=args.max_pixels,
        subdirs=subdirs,
        share=share,
        report_done=not sys.stderr.isatty() or args.no_progress,
    )
    summary.failed[:0] = missing
    if ranks is not None:
        summary = gather(summary)  # every rank done; rank 0 joins the videos and reports for all
        if ranks[0] != 0:
            return 1 if summary.failed else 0
        join_videos(summary, log=lambda m: print(m, file=sys.stderr))
    for remedy in sorted(summary.remedies):
        if remedy in _HINTS:
            print(f"hint: {_HINTS[remedy]}", file=sys.stderr)
    where = f"written to {shown(output / name)}" if name and summary.done else f"outputs in {shown(output)}"
    print(f"{summary.line()}; {where}")
    return 1 if summary.failed else 0


# The library names its parameters (errors.Refused.remedy, OptionError.option); the CLI says its flags.
_HINTS = {
    "max_pixels": "--max-pixels N raises the pixel limit",
    "fmt": "--format png|jpg|webp|tiff picks the output format",
    "existing": "--overwrite or --skip-existing decide what happens to existing outputs",
    "outdir": "-o DIR or --suffix TEXT keep outputs apart from the inputs",
    "tile": "--tile N sets the tile side (e.g. 128)",
    "outscale": "--outscale S sets the final scale",
    "video_codec": "--video-codec C picks the encoder (libx264 for .mp4 / .mkv / .mov, libvpx-vp9 for .webm)",
}
_FLAGS = {"outdir": "-o", "fmt": "--format", "max_pixels": "--max-pixels"}


def _flag(option: str) -> str:
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def cmd_serve(args: argparse.Namespace) -> int:
    from .models.hub import bundled_weights
    from .serve import serve

    models = args.model or sorted(
        bundled_weights(), key=lambda m: (-int(m.split("-x")[1][0]), m)
    )  # x4 (the default) first
    if args.max_megapixels <= 0 or args.max_upload_mb <= 0 or args.queue <= 0:
        raise UsageError("--max-megapixels, --max-upload-mb and --queue must be positive")
    serve(
        models,
        host=args.host,
        port=args.port,
        device=args.device,
        max_pixels=int(args.max_megapixels * 1e6),
        max_bytes=int(args.max_upload_mb * 2**20),
        max_queue=args.queue,
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .errors import require

    require("plot", "seemore explain's figures", "matplotlib")  # before the model loads
    from pathlib import Path

    if not args.images and not args.data:
        raise UsageError("give one or more IMAGEs to explain, or --data DIR... for routing statistics")
    from . import load_model
    from .analysis.report import dataset_routing, explain_image, write_routing
    from .data.images import ImageError
    from .inference.upscaler import resolve_device

    model = load_model(args.model).to(resolve_device(args.device))
    cfg = model.config
    if args.scale is not None and args.scale != cfg.scale:
        raise UsageError(f"{args.model} is an x{cfg.scale} model, but --scale {args.scale} was asked")
    if cfg.in_chans != 3:
        raise UsageError(f"{args.model}: explain handles RGB models (in_chans 3), this one has {cfg.in_chans}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in map(Path, args.images):
        print(f"explaining {path.name}...", file=sys.stderr, flush=True)
        try:
            fig, chosen = explain_image(model, path, out, args.group, title=f"{args.model} on {path.name}")
        except ImageError as e:
            print(f"failed: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path.name}: chosen rank per layer {chosen} -> {fig}")
    if args.data:
        say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        per_set, per_image, bad = dataset_routing(model, list(map(Path, args.data)), say)
        failed += bad
        report, fig, lines = write_routing(model, str(args.model), per_set, per_image, out)
        sets = " + ".join(per_set)
        print(f"routing over {report['total']['images']} images ({sets}) -> {out / 'routing.json'}, {fig}")
        print("\n".join(lines))
    return 1 if failed else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .training.trainer import plot_curves

    run = Path(args.run)
    if not (run / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run}: no metrics.jsonl (not a training run folder)")
    out = plot_curves(run)
    if out is None:
        from .errors import MissingExtra

        raise MissingExtra("plot", "plotting")
    print(f"wrote {out}")
    return 0


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of threads") from None
    cores = _usable_cores()
    if not 1 <= n <= cores:
        raise argparse.ArgumentTypeError(f"{n}: from 1 to {cores} (the cores this process may use)")
    return n


def _crf(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 63:
        raise argparse.ArgumentTypeError(f"{text!r}: from 0 (lossless) to 51 (libx264) or 63 (libvpx-vp9)")
    return n


def _video_codec(text: str) -> str:
    """``--video-codec``: an encoder FFmpeg has (checked here when the video extra is installed)."""
    from .errors import MissingExtra, Refused

    try:
        from .inference.video import check_codec

        check_codec(text)
    except MissingExtra:
        pass  # said once a video is met
    except Refused as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    return text


def _outscale(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and 0 < v <= 32):
        raise argparse.ArgumentTypeError(f"{text!r}: a final scale above 0 and at most 32")
    return v


def _usable_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _mirror(text: str) -> int | str:
    """``--mirror``: auto, or pixels (0 to the engine's largest frame)."""
    from .inference import MIRROR_MAX  # torch-free

    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MIRROR_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: auto, or pixels from 0 to {MIRROR_MAX}")
    return value


def _denoise(text: str) -> float | str:
    """``--denoise``: auto, or a strength from 0 to 1."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: auto, or a strength from 0 (clean weights) to 1 (-real weights)")
    return value


_DENOISE_HELP = (
    "0..1: the network interpolated between the clean (0) and -real (1) weights of the model's scale; auto: "
    "decided per image from its JPEG quality and noise"
)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("seemore-sr")
    except PackageNotFoundError:
        __version__ = "unknown"
    p = argparse.ArgumentParser(prog="seemore", description="SeemoRe super-resolution")
    p.add_argument("--version", action="version", version=f"seemore-sr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument(
        "--threads",
        type=_threads,
        metavar="N",
        help=f"CPU threads (default: the cores this process may use, {_usable_cores()} here)",
    )
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    _add_profile(sub, threads, device)
    _add_convert(sub, threads, device)
    _add_upscale(sub, threads, device)
    _add_serve(sub, threads, device)
    _add_eval(sub, threads, device)
    _add_export(sub, threads, device)
    _add_train(sub, threads, device)
    _add_explain(sub, threads, device)
    _add_plot(sub, threads, device)
    return p


def _add_profile(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore profile``'s arguments."""
    q = sub.add_parser(
        "profile", parents=[threads, device], help="parameters, GMACs (and optionally latency) of a model"
    )
    q.add_argument("model", help="registry name (e.g. seemore-tiny-x4) or checkpoint path")
    q.add_argument("--width", type=int, default=1280, help="output width (default 1280)")
    q.add_argument("--height", type=int, default=720, help="output height (default 720)")
    q.add_argument("--latency", action="store_true", help="also time a forward pass")
    q.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size for --latency")
    q.add_argument("--repeats", type=int, default=5, help="timed runs for --latency (median reported)")
    q.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    q.set_defaults(func=cmd_profile)


def _add_convert(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore convert``'s arguments."""
    q = sub.add_parser("convert", help="turn any readable checkpoint into our .safetensors format")
    q.add_argument("input", help="checkpoint to read (.pth / .pt / .safetensors, the authors' files included)")
    q.add_argument("output", help="output .safetensors path")
    q.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    q.add_argument("--overwrite", action="store_true", help="replace an existing output")
    q.set_defaults(func=cmd_convert)


def _add_upscale(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore upscale``'s arguments."""
    from .inference import MIRROR, MIRROR_GRAPHICS  # torch-free

    q = sub.add_parser("upscale", parents=[threads, device], help="upscale images, folders or globs")
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    q.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder; or, for one input, the output file (e.g. -o result.png: its extension picks the format)",
    )
    q.add_argument(
        "--model",
        help="registry name or checkpoint (default: bundled seemore-tiny-x{scale}); seemore-tiny-x{2,4}-real "
        "for JPEGs, noisy or blurred photos",
    )
    q.add_argument("--scale", type=int, choices=[2, 3, 4], help="pick the bundled model of this scale")
    q.add_argument("--denoise", type=_denoise, metavar="S|auto", help=_DENOISE_HELP + " (the default for -real)")
    q.add_argument("--suffix", default="", help="appended to output file names")
    q.add_argument("--format", choices=["png", "jpg", "webp", "tiff"], help="output format (default: the input's)")
    q.add_argument("--quality", type=int, default=95, metavar="Q", help="JPEG / WebP quality, 1..100 (default 95)")
    q.add_argument(
        "--video-codec",
        type=_video_codec,
        metavar="C",
        help="video encoder (default libx264, libvpx-vp9 for .webm; ffv1 in .mkv: lossless); AVI inputs are written "
        "as .mkv",
    )
    q.add_argument(
        "--crf",
        type=_crf,
        default=18,
        help="quality: libx264 0 (lossless) .. 51, libvpx-vp9 0 .. 63; lower is better (default 18)",
    )
    q.add_argument(
        "--video-segment",
        type=int,
        default=120,
        metavar="FRAMES",
        help="cut videos at keyframes into segments of at least this many frames: what a rerun keeps "
        "and torchrun's ranks share (default 120)",
    )
    q.add_argument("--tile", type=int, help="tile side in input pixels; 0 = never tile (default: auto)")
    q.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="compute precision (default fp32)"
    )
    q.add_argument(
        "--executor",
        choices=["auto", *EXECUTORS],
        default="auto",
        help="how the network runs (default auto: the fastest measured on this CPU)",
    )
    q.add_argument(
        "--force-precision",
        action="store_true",
        help="run bf16 even on a CPU without native bf16 (by default such a CPU runs fp32, with a warning)",
    )
    q.add_argument("--outscale", type=_outscale, help="final scale (e.g. 3.5), by resizing the model's output")
    q.add_argument(
        "--mirror",
        type=_mirror,
        default=MIRROR,
        metavar="auto|PX",
        help=f"input pixels mirrored around the image while it runs, against the coloured frame the network "
        f"draws around flat colours at the border: auto = {MIRROR_GRAPHICS} on the sides that are flat (a logo's "
        f"background, a screenshot's margin); N = on every side; 0 = the network on the image alone, as the "
        f"authors' code runs it (default {MIRROR})",
    )
    q.add_argument(
        "--backend",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="onnxruntime: CPU, fp32, whole images; the exported graph is cached",
    )
    q.add_argument("-r", "--recursive", action="store_true", help="descend into folders")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone")
    q.add_argument(
        "--max-pixels",
        type=int,
        default=200_000_000,
        metavar="N",
        help="refuse inputs with more pixels (decompression-bomb guard; default 200,000,000)",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_upscale)


def _add_serve(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore serve``'s arguments."""
    q = sub.add_parser(
        "serve", parents=[threads, device], help="a local web app: drop images in a browser, compare, download"
    )
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    q.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    q.add_argument(
        "--model",
        action="append",
        metavar="M",
        help="registry name or checkpoint to offer; repeat for several (default: the bundled x2, x3, x4)",
    )
    q.add_argument("--max-megapixels", type=float, default=16.0, help="largest input in megapixels (default 16)")
    q.add_argument("--max-upload-mb", type=float, default=64.0, help="largest upload in MB (default 64)")
    q.add_argument("--queue", type=int, default=8, help="images that may wait; more are refused (default 8)")
    q.set_defaults(func=cmd_serve)


def _add_eval(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore eval``'s arguments."""
    q = sub.add_parser(
        "eval", parents=[threads, device], help="PSNR/SSIM on benchmark folders, the literature's protocol"
    )
    q.add_argument("model", help="registry name (bundled weights), checkpoint path, or 'bicubic'")
    q.add_argument("--data", nargs="+", required=True, metavar="DIR", help="dataset folders (HR/ [+ LR_bicubic/])")
    q.add_argument("--scale", type=int, choices=[2, 3, 4], help="the scale to evaluate at (default: the model's)")
    q.add_argument("--json", metavar="PATH", help="write the results as JSON")
    q.add_argument("--csv", metavar="PATH", help="write one CSV row per dataset (PSNR, SSIM, images)")
    q.add_argument("--compare-paper", action="store_true", help="show the paper's numbers side by side")
    q.add_argument("--save-images", metavar="DIR", help="save the SR outputs here (and degraded LR inputs)")
    q.add_argument(
        "--degrade",
        default="clean",
        choices=DEGRADE_PRESETS,
        help="a fixed degradation of every LR after the bicubic downscale, seeded by the file's name: "
        "jpeg50/70/90 (JPEG quality), noise5/10 (Gaussian sigma on 0..255), mixed (HR blur sigma 0.5 x scale, "
        "noise 5, JPEG 60); default clean",
    )
    q.add_argument(
        "--denoise", type=_denoise, metavar="S|auto", help=_DENOISE_HELP + " (default: the weights as named)"
    )
    q.add_argument(
        "--mirror",
        type=_mirror,
        default=0,
        metavar="auto|PX",
        help="input pixels mirrored around each image while it runs, as upscale --mirror (default 0: the network "
        "on the image alone, the literature's protocol)",
    )
    q.add_argument("--tile", type=int, help="tile side (default: auto, only when memory requires)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_eval)


def _add_export(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore export``'s arguments."""
    q = sub.add_parser("export", help="export a model to ONNX")
    q.add_argument("model", help="registry name (bundled weights) or checkpoint path")
    q.add_argument("output", help="output .onnx path")
    q.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    q.set_defaults(func=cmd_export)


def _add_train(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore train``'s arguments."""
    q = sub.add_parser(
        "train",
        parents=[threads],
        help="train or resume a model",
        description="Train or resume a model. --threads N sets train.threads (on a machine shared with other jobs, "
        "1 thread per process is much faster than threads that wait on each other).",
    )
    from .training.config import RECIPES

    bundled = ", ".join(sorted(r.stem for r in RECIPES.glob("*.yaml")))
    q.add_argument("recipe", help=f"recipe YAML path or bundled name ({bundled})")
    q.add_argument("--run", required=True, help="run directory (resumed if it holds a state)")
    q.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a recipe value, e.g. train.lr=2e-4 (repeatable)",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    q.add_argument(
        "--max-minutes", type=float, metavar="M", help="stop cleanly (state saved) after M minutes of training"
    )
    q.set_defaults(func=cmd_train)


def _add_explain(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore explain``'s arguments."""
    q = sub.add_parser(
        "explain",
        parents=[threads, device],
        help="the experts at work: routing statistics (paper Fig. 5) or one image's features",
    )
    q.add_argument("model", help="registry name (bundled weights) or checkpoint path, the authors' files included")
    q.add_argument("images", nargs="*", metavar="IMAGE", help="images to explain one by one (fed as LR inputs)")
    q.add_argument("--data", nargs="+", metavar="DIR", help="dataset folders (HR/ [+ LR_bicubic/]): routing statistics")
    q.add_argument("--scale", type=int, help="check that the model has this scale (LR is made at the model's)")
    q.add_argument("--group", type=int, default=0, help="residual group whose features are shown (0-based)")
    q.add_argument("--out", default="explain", help="output folder (default: explain/)")
    q.set_defaults(func=cmd_explain)


def _add_plot(sub, threads: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """``seemore plot``'s arguments."""
    q = sub.add_parser("plot", help="write a run's loss / validation curves (curves.png), e.g. mid-run")
    q.add_argument("run", help="run directory")
    q.set_defaults(func=cmd_plot)


def set_threads(args: argparse.Namespace) -> None:
    """torch's thread count from ``--threads`` (default: the usable cores); imports torch."""
    import torch

    torch.set_num_threads(args.threads or _usable_cores())


_CHECK_FIRST = {cmd_upscale, cmd_eval}  # they check their inputs before torch loads, then call set_threads


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # before any heavy import: --help and usage errors stay fast

    from .errors import OptionError, SeemoreError
    from .training.config import ConfigError  # torch-free, like the other imports here

    try:
        if hasattr(args, "threads") and args.func not in _CHECK_FIRST:
            set_threads(args)
        return args.func(args)
    except OptionError as e:
        print(f"seemore {args.command}: error: {_flag(e.option)} {e.value}: {e.reason}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"seemore {args.command}: error: {e}", file=sys.stderr)
        if e.suggest:
            print(f"hint: --set '{e.suggest}'", file=sys.stderr)
        return 2
    except (SeemoreError, OSError) as e:  # anything else is a bug: its traceback stays
        print(f"seemore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seemore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
