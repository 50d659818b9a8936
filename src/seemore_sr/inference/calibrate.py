"""Which executor runs fastest on this CPU: measured once, then remembered.

The fastest way to run the folded network depends on the CPU: oneDNN's fused NHWC
kernels win on AVX-512 Xeons with AMX, and lose to plainer paths on AVX2-only CPUs
(BENCHMARKS.md). :func:`fastest_executor` times every candidate on a short calibration
(the network's first two residual groups on a 144 x 256 input: the per-group work that
dominates, at feature maps of the size that decides cache behaviour; three interleaved
rounds in a balanced order), and keeps the winner in
``<cache>/executors.json`` under the CPU model, torch version and channel width (not the
thread count: processes with different thread counts, such as torchrun's ranks and a
single process, then run the same executor, and the NHWC executors give the same bytes
at any thread count). Later processes read it back, so every run on this machine uses
the same executor (their outputs agree to the byte, not only to 1e-5). Each candidate's
time is its fastest round: other programs' load only adds time.

``SEEMORE_EXECUTOR=name`` forces an executor; ``SEEMORE_CALIBRATE=0`` skips measuring
and takes the choice from a table of known CPU kinds (:func:`table_choice`).
"""

from __future__ import annotations

import copy
import json
import os
import time

import torch

from ..bench import _cpuinfo, cpu_description, interleaved
from ..models.folded import fold
from ..models.seemore import SeemoRe
from .executors import make_ops
from .nhwc import DNN

__all__ = ["fastest_executor", "candidates", "calibrate", "table_choice", "CALIBRATION_SIZE"]

CALIBRATION_SIZE = (144, 256)  # LR input of the calibration pass
_CHOSEN: dict[str, str] = {}  # this process's choices (also when the cache cannot be written)


def candidates() -> list[str]:
    """The CPU executors ``auto`` chooses among: the NHWC ones, whose bytes do not depend on
    the thread count (one process and torchrun's ranks write the same files). ``nchw-cl``
    and ``nchw`` can be forced; their outputs move by ~7e-7 between 1 and 2 threads, and
    they were not the fastest on the CPUs measured (BENCHMARKS.md)."""
    return (["nhwc-fused", "nhwc-fused-ln"] if DNN else []) + ["nhwc"]


def table_choice() -> str:
    """The choice without measuring, from the CPU's flags: oneDNN's fused kernels on
    AVX-512 CPUs, with PyTorch's ``layer_norm`` on Intel's and the composed norm on AMD's
    (PyTorch's kernel handled 36-channel rows poorly there); plain NHWC ops on AVX2-only
    CPUs (the fastest exact path measured there). The per-CPU measurements: BENCHMARKS.md."""
    info = _cpuinfo()
    if DNN and "avx512f" in set(info.get("flags", "").split()):
        return "nhwc-fused-ln" if info.get("vendor_id") == "GenuineIntel" else "nhwc-fused"
    return "nhwc"


def _key(model: SeemoRe) -> str:
    """CPU, torch and width; not the thread count (see the module docstring)."""
    return f"{cpu_description()} | torch {torch.__version__} | C={model.config.embedding_dim}"


def _cache_file():
    from .export import cache_dir

    return cache_dir() / "executors.json"


def calibrate(model: SeemoRe, rounds: int = 3, size: tuple[int, int] = CALIBRATION_SIZE) -> dict[str, float]:
    """Milliseconds of each candidate executor on the calibration pass (its fastest round)."""
    net = copy.deepcopy(model).float().cpu().eval()
    net.body = net.body[:2]
    x = torch.rand(1, net.config.in_chans, *size, generator=torch.Generator().manual_seed(0))
    runs = {name: fold(net, make_ops(name)) for name in candidates()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for f in runs.values():
            f(x)  # warm-up: oneDNN primitives, allocator
        for name in interleaved(runs, rounds):
            t = time.perf_counter()
            runs[name](x)
            times[name].append(time.perf_counter() - t)
    return {name: 1e3 * min(t) for name, t in times.items()}


def fastest_executor(model: SeemoRe) -> str:
    """The executor ``optimize`` uses for ``model`` on this CPU (see the module docstring)."""
    forced = os.environ.get("SEEMORE_EXECUTOR")
    if forced:
        return forced
    if os.environ.get("SEEMORE_CALIBRATE", "1") == "0":
        return table_choice()
    key, path = _key(model), _cache_file()
    if key in _CHOSEN:
        return _CHOSEN[key]
    try:
        known = json.loads(path.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("executor") in candidates():
        _CHOSEN[key] = entry["executor"]
        return entry["executor"]
    import sys

    print("measuring the fastest way to run on this CPU, once (remembered for later runs)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    ms = calibrate(model)
    best = _CHOSEN[key] = min(ms, key=ms.get)
    print(f"measured in {time.perf_counter() - start:.0f} s: {best}", file=sys.stderr, flush=True)
    known[key] = {"executor": best, "ms": {k: round(v, 2) for k, v in ms.items()}}
    try:
        from .._fs import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, replace=True) as tmp:
            tmp.write_text(json.dumps(known, indent=1) + "\n")
    except OSError:
        pass  # an unwritable cache: measured again next time
    return best
