"""The ``seemore`` command line: profile, convert, upscale, eval, train, export, bench."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


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

        lh, lw = args.input_size or (h, w)
        res = measure(model, (1, cfg.in_chans, lh, lw), torch.device(args.device), repeats=args.repeats)
        print(f"latency     {res['median_ms']:.1f} ms median over {args.repeats} runs on {args.device} ({lw}x{lh} input)")
        if res.get("peak_mb") is not None:
            print(f"peak memory {res['peak_mb']:.0f} MB")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .models.checkpoint import load_checkpoint, save_model

    model = load_checkpoint(args.input, **_override_args(args.override))
    out = save_model(model, args.output, converted_from=str(args.input), **getattr(model, "provenance", {}))
    cfg = model.config
    print(f"wrote {out}: seemore {cfg.num_layers} layers, C={cfg.embedding_dim}, x{cfg.scale}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.config import load_config
    from .training.trainer import train

    cfg = load_config(args.recipe, args.set)
    result = train(cfg, args.run, progress=not args.no_progress)
    print(f"done: iteration {result['iteration']}, best Set5 PSNR {result['best_psnr']:.3f} dB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seemore", description="SeemoRe super-resolution")
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("profile", help="parameters, GMACs (and optionally latency) of a model")
    q.add_argument("model", help="registry name (e.g. seemore-tiny-x4) or checkpoint path")
    q.add_argument("--width", type=int, default=1280, help="output width (default 1280)")
    q.add_argument("--height", type=int, default=720, help="output height (default 720)")
    q.add_argument("--latency", action="store_true", help="also time a forward pass")
    q.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size for --latency")
    q.add_argument("--device", default="cpu")
    q.add_argument("--repeats", type=int, default=5)
    q.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    q.set_defaults(func=cmd_profile)

    q = sub.add_parser("convert", help="turn any readable checkpoint into our .safetensors format")
    q.add_argument("input")
    q.add_argument("output")
    q.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    q.set_defaults(func=cmd_convert)

    q = sub.add_parser("train", help="train or resume a model")
    q.add_argument("recipe", help="recipe YAML path or bundled name (tiny, base, large, cpu)")
    q.add_argument("--run", required=True, help="run directory (resumed if it holds a state)")
    q.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    from .data.images import ImageError
    from .models.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, ImageError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"seemore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seemore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
