"""Every path agrees with the reference module on a grid of configs (issue 14): the
NHWC rewrite (``optimize``) and exact tiling over either network's stages (the NHWC
rewrite's, the reference's NCHW ones), within 1e-5, not only at the golden configs."""

import pytest
import torch

from seemore_sr.inference.fast import optimize
from seemore_sr.inference.tiling import group_halo, tiled_forward
from seemore_sr.models.registry import config_for
from seemore_sr.models.seemore import SeemoRe, SeemoReConfig

SMALL = dict(scale=2, num_layers=2, embedding_dim=16)
GRID = {
    "tiny-x4": config_for("seemore-tiny-x4"),
    "base-x2": config_for("seemore-base-x2"),
    "large-x3": config_for("seemore-large-x3", num_layers=4),  # large's width, shuffle-free, recursion 1
    "topk2": SeemoReConfig(**SMALL, topk=2),
    "gray": SeemoReConfig(**SMALL, in_chans=1),
    "linear": SeemoReConfig(**SMALL, lr_space="linear"),
    "double": SeemoReConfig(**SMALL, lr_space="double"),
    "4-experts": SeemoReConfig(**SMALL, num_experts=4),
    "kernel-7": SeemoReConfig(**SMALL, global_kernel_size=7),
    "kernel-15": SeemoReConfig(**SMALL, global_kernel_size=15),
    "kernel-21": SeemoReConfig(**SMALL, global_kernel_size=21),
    "no-shuffle": SeemoReConfig(**SMALL, use_shuffle=False),
    "img-range-255": SeemoReConfig(**SMALL, img_range=255.0),
    "recursive-3": SeemoReConfig(**SMALL, recursive=3),
}


@pytest.mark.parametrize("name", GRID)
def test_optimize_and_tiles_match_the_module(name):
    cfg = GRID[name]
    torch.manual_seed(0)
    model = SeemoRe(cfg).eval()
    f = cfg.min_size
    x = torch.rand(2, cfg.in_chans, 2 * f + 5, 2 * f + 13)  # 3 x 3 tiles of f, ragged edges
    x[1] = 1 - x[1]  # the two images route differently
    with torch.no_grad():
        ref = model(x)
        fast = optimize(model)
        assert (fast(x) - ref).abs().max() <= 1e-5
        assert (tiled_forward(fast, x, f) - ref).abs().max() <= 1e-5  # NHWC stages (the CPU's path)
        assert (tiled_forward(model, x, f) - ref).abs().max() <= 1e-5  # NCHW stages (cuDNN's path on a GPU)


def test_halo_grows_with_the_kernel():
    """The striped conv of SME reaches kernel // 2 pixels: a fixed 10-pixel halo (enough for
    the released kernel 11) gave 3e-3 errors at kernel 21."""
    assert group_halo(config_for("seemore-tiny-x2")) == 10
    assert group_halo(SeemoReConfig(**SMALL, global_kernel_size=21)) == 15
