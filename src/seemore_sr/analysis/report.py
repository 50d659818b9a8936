"""``seemore explain``'s reports: routing statistics over dataset folders (JSON, CSV and the
paper's Figure 5) and one image's experts and features, written to a folder."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.images import ImageError, read_image
from ..data.paired import find_pairs
from ..evaluation.evaluate import lr_for
from ..models.seemore import SeemoRe
from .explain import capture, expert_ranks_of, route_images, routing_counts

__all__ = ["NUMBERING", "explain_image", "dataset_routing", "write_routing"]

NUMBERING = "layers and experts from 1, as in the figures and routing.csv; counts and ranks by position"


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def explain_image(model: SeemoRe, path: Path, out: Path, group: int, title: str) -> tuple[Path, str]:
    """One image's routing and features: ``<stem>_explain.png`` and ``.json`` in ``out``;
    ``(figure, the chosen rank per layer in words)``. ``ImageError`` for an unreadable file."""
    from .figures import image_figure

    ranks = expert_ranks_of(model)
    cap = capture(model, _rgb(read_image(path)), group=group)
    fig = image_figure(cap, out / f"{path.stem}_explain.png", title=title)
    info = {"image": str(path), "numbering": NUMBERING, "ranks": ranks,
            "experts": [[e + 1 for e in layer] for layer in cap.experts], "weights": cap.weights}  # fmt: skip
    (out / f"{path.stem}_explain.json").write_text(json.dumps(info, indent=1) + "\n")
    return fig, ", ".join(f"{i + 1}:r{ranks[e[0]]}" for i, e in enumerate(cap.experts))


def dataset_routing(
    model: SeemoRe, folders: list[Path], log: Callable[[str], None]
) -> tuple[dict[str, np.ndarray], dict[str, list], int]:
    """Each folder's ``[layer, expert]`` image counts (LR made as ``seemore eval`` makes it),
    every image's chosen experts (from 1), and how many images failed (each said to ``log``)."""
    scale = model.config.scale
    per_set, per_image, failed = {}, {}, 0
    for folder in folders:
        lrs = []
        for hr_path, lr_path in find_pairs(folder, scale, recursive=False):
            try:
                hr = _rgb(read_image(hr_path))
                h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
                lrs.append((hr_path.stem, _rgb(lr_for(np.ascontiguousarray(hr[:h, :w]), scale, lr_path))))
            except (ImageError, ValueError) as e:
                log(f"failed: {e}")
                failed += 1
        log(f"routing {folder.name}: {len(lrs)} images...")
        choices = route_images(model, [lr for _, lr in lrs])
        per_set[folder.name] = routing_counts(model, choices)
        per_image.update(
            {
                f"{folder.name}/{n}": [[e + 1 for e in layer] for layer in c]
                for (n, _), c in zip(lrs, choices, strict=True)
            }
        )
    return per_set, per_image, failed


def write_routing(
    model: SeemoRe, name: str, per_set: dict[str, np.ndarray], per_image: dict[str, list], out: Path
) -> tuple[dict, Path, list[str]]:
    """``routing.json``, ``routing.csv`` and ``routing.png`` in ``out``; ``(report, figure,
    one line per layer with each rank's share)``."""
    from .figures import routing_figure

    cfg, ranks = model.config, expert_ranks_of(model)
    total = sum(per_set.values())
    report = {
        "model": name,
        "numbering": NUMBERING,
        "scale": cfg.scale,
        "ranks": ranks,
        "datasets": {k: {"images": int(v[0].sum()) // cfg.topk, "counts": v.tolist()} for k, v in per_set.items()},
        "total": {"images": int(total[0].sum()) // cfg.topk, "counts": total.tolist()},
        "per_image": per_image,
    }
    (out / "routing.json").write_text(json.dumps(report, indent=1) + "\n")
    with (out / "routing.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "layer", "expert", "rank", "count", "share"])
        for dataset, counts in [*per_set.items(), ("total", total)]:
            for layer, row in enumerate(counts):
                for e, n in enumerate(row):
                    w.writerow([dataset, layer + 1, e + 1, ranks[e], int(n), f"{n / max(row.sum(), 1):.4f}"])
    sets = " + ".join(per_set)
    fig = routing_figure(total, ranks, out / "routing.png", f"{name}: experts chosen on {sets}")
    lines = [
        f"  layer {layer + 1}: "
        + ", ".join(f"rank {ranks[e]} {100 * n / max(row.sum(), 1):.0f}%" for e, n in enumerate(row))
        for layer, row in enumerate(total)
    ]
    return report, fig, lines
