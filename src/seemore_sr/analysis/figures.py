"""Figures for ``seemore explain`` (matplotlib: ``pip install seemore-sr[plot]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from .explain import Capture

__all__ = ["routing_figure", "image_figure"]


def _plt():
    try:
        import matplotlib
    except ImportError:
        from ..errors import MissingExtra

        raise MissingExtra("plot", "figures") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path, dpi: int) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def routing_figure(counts: np.ndarray, ranks: list[int], path: str | Path, title: str) -> Path:
    """Stacked bars: for each MoRE layer (depth), the share of images that chose each expert."""
    plt = _plt()
    layers, experts = counts.shape
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * layers, 4.2))
    bottom = np.zeros(layers)
    colors = plt.get_cmap("viridis")(np.linspace(0.15, 0.9, experts))
    depth = np.arange(1, layers + 1)
    for e in range(experts):
        ax.bar(depth, share[:, e], bottom=bottom, color=colors[e], label=f"expert {e + 1}: rank {ranks[e]}")
        for d in range(layers):
            if share[d, e] >= 0.06:
                ax.text(depth[d], bottom[d] + share[d, e] / 2, f"{100 * share[d, e]:.0f}%", ha="center",
                        va="center", fontsize=8, color="white" if e < experts - 1 else "black")  # fmt: skip
        bottom += share[:, e]
    ax.set(xlabel="MoRE layer (residual group, input side first)", ylabel="share of images", title=title,
           xticks=depth, ylim=(0, 1))  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="chosen expert")
    return _save(plt, fig, path, dpi=110)


def _rgb(t: Tensor) -> np.ndarray:
    a = t.clamp(0, 1).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def _energy(t: Tensor) -> np.ndarray:
    """A feature tensor (C, H, W) as one map: the mean absolute activation over channels."""
    return t.abs().mean(0).numpy()


def image_figure(cap: Capture, path: str | Path, title: str = "") -> Path:
    """One image's experts at work: input / output, the router's choice per layer, the chosen
    experts' low-rank features per layer (Figure 5, right), and a residual group's features
    before and after MoRE and SEE (Figure 6)."""
    plt = _plt()
    layers = len(cap.experts)
    cols = max(layers, 5)
    fig = plt.figure(figsize=(2.6 * cols, 8.4))
    grid = fig.add_gridspec(3, cols, height_ratios=[1.15, 1, 1])
    gray = "gray" if cap.input.shape[0] == 1 else None

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(_rgb(cap.input), cmap=gray, interpolation="nearest")
    ax.set_title(f"input {cap.input.shape[2]}x{cap.input.shape[1]}", fontsize=9)
    ax.axis("off")
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(_rgb(cap.output), cmap=gray)
    ax.set_title(f"output {cap.output.shape[2]}x{cap.output.shape[1]}", fontsize=9)
    ax.axis("off")
    ax = fig.add_subplot(grid[0, 2:])
    chosen = [e[0] for e in cap.experts]
    ax.bar(np.arange(1, layers + 1), [cap.ranks[e] for e in chosen], color="C0")
    for d, (e, w) in enumerate(zip(cap.experts, cap.weights, strict=True), start=1):
        label = "+".join(f"{k + 1}" for k in e)
        ax.text(d, cap.ranks[e[0]] + 0.2, f"expert {label}\nweight {w[0]:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="MoRE layer", ylabel="rank of the chosen expert", xticks=np.arange(1, layers + 1),
           yticks=sorted(set(cap.ranks)), ylim=(0, max(cap.ranks) * 1.45),
           title="router's choice per layer (softmax weight of the chosen expert)")  # fmt: skip

    for i in range(layers):
        ax = fig.add_subplot(grid[1, i])
        feat = cap.lowrank.get(i)
        if feat is None:
            ax.axis("off")
            continue
        im = ax.imshow(_energy(feat), cmap="magma")
        ax.set_title(f"layer {i + 1}: rank-{feat.shape[0]} features", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)

    panels = [
        ("entering group", cap.before),
        ("after MoRE (RME)", cap.after_more),
        ("after SEE (SME)", cap.after_see),
        ("added by MoRE", cap.after_more - cap.before),
        ("added by SEE", cap.after_see - cap.after_more),
    ]
    for j, (name, t) in enumerate(panels):
        ax = fig.add_subplot(grid[2, j])
        im = ax.imshow(_energy(t), cmap="magma" if j < 3 else "viridis")
        ax.set_title(f"group {cap.group + 1}: {name}", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(
        (title + "\n" if title else "")
        + "row 2: mean |activation| of the chosen expert's low-rank product conv_1(x)*conv_2(k); "
        "row 3: mean |activation| over channels",
        fontsize=10,
    )
    return _save(plt, fig, path, dpi=90)
