"""Latency / peak-memory measurement shared by ``seemore profile --latency`` and the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["measure", "time_call"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


@torch.no_grad()
def measure(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device, repeats: int = 5) -> dict:
    """Median / spread of ``repeats`` forward passes after one warm-up; peak memory on CUDA."""
    model = model.to(device).eval()
    x = torch.rand(*shape, device=device)
    model(x)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [time_call(lambda: model(x), device) for _ in range(repeats)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "max_ms": 1e3 * max(times),
        "peak_mb": peak,
    }
