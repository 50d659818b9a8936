"""Average the weights of several checkpoints of one network (stochastic weight averaging).

    python scripts/average_weights.py A.safetensors B.safetensors [...] -o AVG.safetensors

Every file must hold the same network (same config, same tensor names and shapes); the
result is their element-wise mean, written with the first file's config and a provenance
naming its sources. Tried on the campaign's x4: the mean of two consecutive
shipped endpoints, each the end of a restart-and-decay extension, is worse than either
(README, "Averaging endpoints").
"""

from __future__ import annotations

import argparse
import sys

import torch

import seemore_sr as sr
from seemore_sr import CheckpointError


def average(paths: list[str]) -> torch.nn.Module:
    """The first model, its weights replaced by the mean over all files."""
    models = [sr.load_model(p) for p in paths]
    first = models[0]
    for p, m in zip(paths[1:], models[1:], strict=True):
        if m.config != first.config:
            raise CheckpointError(f"{p}: a different network from {paths[0]} ({m.config} against {first.config})")
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0) for k in states[0]}
    first.load_state_dict(mean)
    return first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="checkpoints of one network (two or more)")
    p.add_argument("-o", "--out", required=True, help="the averaged .safetensors file")
    args = p.parse_args(argv)
    if len(args.weights) < 2:
        p.error("give two or more checkpoints to average")
    try:
        model = average(args.weights)
        sr.save_model(model, args.out, averaged_from=args.weights)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"average_weights: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: the mean of {len(args.weights)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
