"""ONNX export with data-dependent routing and dynamic batch / height / width.

The authors' eval path picks experts in Python, so a traced graph freezes the experts
chosen for the tracing input. Here every MoE layer is exported in its dense form
(all experts computed, the unchosen ones weighted by zero, the top-k taken inside the
graph), so each image of a batch is routed by its own content at run time.
Inputs must be at least ``4**recursive`` pixels on a side (16 for tiny / base):
the graph does not pad.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .._fs import atomic_path
from ..models.seemore import MoELayer, SeemoRe

__all__ = ["export_onnx", "OnnxUpscaler", "onnx_runner"]


def export_onnx(model: SeemoRe, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``model`` to ``path`` (atomically) as ONNX: input ``lr`` (N, C, H, W) float32 in [0, 1]."""
    net = copy.deepcopy(model).eval().float().cpu()
    for m in net.modules():
        if isinstance(m, MoELayer):
            m.dense = True
    size = max(net.config.min_size, 32)
    x = torch.rand(1, net.config.in_chans, size, size + 8)
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(tmp),
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={
                "lr": {0: "batch", 2: "height", 3: "width"},
                "sr": {0: "batch", 2: "out_height", 3: "out_width"},
            },
            opset_version=opset,
            dynamo=False,
        )
    return path


class OnnxUpscaler(torch.nn.Module):
    """Runs an exported ``.onnx`` file with onnxruntime behind the ``SeemoRe`` call contract."""

    def __init__(self, path: str | os.PathLike, scale: int, min_size: int, threads: int = 0) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.scale, self.min_size = scale, min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = max(self.min_size - h, 0), max(self.min_size - w, 0)
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        (y,) = self.session.run(["sr"], {"lr": x.detach().cpu().float().numpy()})
        return torch.from_numpy(y)[..., : h * self.scale, : w * self.scale]


def onnx_runner(model: SeemoRe) -> OnnxUpscaler:
    """Export ``model`` to a temporary file and load it in onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ValueError("the onnxruntime backend needs: pip install 'seemore-sr[onnx]'") from None
    folder = tempfile.mkdtemp(prefix="seemore-onnx-")
    path = export_onnx(model, Path(folder) / "model.onnx")
    return OnnxUpscaler(path, model.config.scale, model.config.min_size, threads=torch.get_num_threads())
