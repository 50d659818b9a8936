"""ONNX export with data-dependent routing and dynamic batch / height / width.

The authors' eval path picks experts in Python, so a traced graph freezes the experts
chosen for the tracing input. Here the network's folded form is traced dense
(:func:`fold(model, dense=True) <seemore_sr.models.folded.fold>`: every MoE
layer's experts as one low-rank product, the unchosen ones weighted by zero, the top-k
taken inside the graph), so each image of a batch is routed by its own content at run
time; no channel shuffle or splits, norm affines in the next conv. Inputs of any size
work: sides below ``4**recursive`` are padded inside the graph (edge replication, as
the module does) and the output cropped back.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .._fs import atomic_path, cache_dir
from ..models.folded import fold
from ..models.seemore import SeemoRe, pad_to_min

__all__ = ["export_onnx", "OnnxUpscaler", "onnx_runner", "cache_dir", "graph_key"]

GRAPH_VERSION = 3  # what export_onnx traces; part of the cache key (1: dense eager, 2: folded, no padding)


class _Dense(torch.nn.Module):
    """The eager module with dense MoE layers, for tracing."""

    def __init__(self, net: SeemoRe) -> None:
        super().__init__()
        self.net, self.config = net, net.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, dense=True)


def export_onnx(model: SeemoRe, path: str | os.PathLike, opset: int = 17, *, folded: bool = True) -> Path:
    """Write ``model`` to ``path`` (atomically) as ONNX: input ``lr`` (N, C, H, W) float32 in [0, 1].

    ``folded=False`` traces the eager module itself (every expert on its own, MoE layers
    in their dense form): the same function in a graph ~1.2x slower in onnxruntime, whose
    node names follow the checkpoint's modules."""
    net = copy.deepcopy(model).eval().float().cpu()
    net = fold(net, dense=True) if folded else _Dense(net)
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
        x = pad_to_min(x, self.min_size)
        (y,) = self.session.run(["sr"], {"lr": x.detach().cpu().float().numpy()})
        return torch.from_numpy(y)[..., : h * self.scale, : w * self.scale]


def graph_key(model: SeemoRe, opset: int) -> str:
    """What identifies an exported graph: the config, every weight, the opset, torch's version
    and :data:`GRAPH_VERSION`."""
    h = hashlib.sha256(json.dumps([dataclasses.asdict(model.config), opset, torch.__version__, GRAPH_VERSION]).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_runner(model: SeemoRe, opset: int = 17) -> OnnxUpscaler:
    """``model`` in onnxruntime, exported once: the graph is cached (:func:`cache_dir`) under
    :func:`graph_key`, so later runs with the same weights load it instead of exporting again.

    The cache is not trusted as it is: each graph has its SHA-256 written beside it
    (``.sha256``) when exported, and a cached graph whose bytes do not match (a foreign or
    damaged file at that path) is exported again. An unwritable cache falls back to a
    temporary file."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        from ..errors import MissingExtra

        raise MissingExtra("onnx", "the onnxruntime backend") from None
    cfg, threads = model.config, torch.get_num_threads()
    name = f"{graph_key(model, opset)}-opset{opset}.onnx"
    try:
        path = cache_dir() / "onnx" / name
        digest = path.with_name(name + ".sha256")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and digest.is_file() and digest.read_text().strip() == _digest(path):
            try:
                return OnnxUpscaler(path, cfg.scale, cfg.min_size, threads=threads)
            except Exception:  # noqa: BLE001 - verified bytes that onnxruntime rejects: export again
                pass
        digest.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        export_onnx(model, path, opset)
        with atomic_path(digest) as tmp:
            tmp.write_text(_digest(path) + "\n")
        return OnnxUpscaler(path, cfg.scale, cfg.min_size, threads=threads)
    except OSError:  # no writable cache: export for this run only (the session holds the graph)
        with tempfile.TemporaryDirectory(prefix="seemore-onnx-") as folder:
            path = export_onnx(model, Path(folder) / name, opset)
            return OnnxUpscaler(path, cfg.scale, cfg.min_size, threads=threads)
