"""The stage interface: a SeemoRe network cut where it looks at the whole image.

A residual group has two operations that see the whole image: the router averages its
features over the image, and ``calibrate`` pools them 4**recursive times into a small
context map. Everything else is local. Cut there, a group is five stages::

    a, k = g.branches(x)                        # local
    ctx  = g.context(g.pool(k))                 # pool: local per 4**recursive block
    k    = k + bilinear(ctx, k's size)
    out  = g.finish(x, a, k, g.routing(mean of a over the image))   # local

The folded residual group (:class:`~seemore_sr.models.folded.FoldedGroup`) implements
it, in whichever layout its executor uses; its ``forward`` is the composition above.
Tiled inference (:mod:`seemore_sr.inference.tiling`) runs the same stages over tiles,
with the mean and the pooled map gathered from every tile first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["GroupStages", "NetworkStages"]


@runtime_checkable
class GroupStages(Protocol):
    """One residual group, as stages. Tensors are NHWC ``(N, H, W, C)`` when
    ``channels_last`` is True, else NCHW; ``pool`` and ``context`` give NCHW maps."""

    channels_last: bool

    @property
    def halo(self) -> int:
        """Context pixels the group needs around a tile, as its blocks declare them."""
        ...

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def pool(self, k: Tensor) -> Tensor: ...

    def context(self, pooled: Tensor) -> Tensor: ...

    def routing(self, mean: Tensor) -> tuple[Tensor, Tensor]: ...

    def finish(self, x: Tensor, a: Tensor, k: Tensor, routing: tuple[Tensor, Tensor]) -> Tensor: ...


@runtime_checkable
class NetworkStages(Protocol):
    """A whole network: ``head`` (NCHW image -> features in the groups' layout), the
    groups, and ``tail`` (features and the head's output -> NCHW image, not cropped)."""

    config: object

    @property
    def groups(self) -> Sequence[GroupStages]: ...

    def head(self, x: Tensor) -> Tensor: ...

    def tail(self, feat: Tensor, res: Tensor) -> Tensor: ...
