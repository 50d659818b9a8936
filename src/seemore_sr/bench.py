"""Latency / peak-memory measurement shared by ``seemore profile --latency`` and the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

import torch

__all__ = ["cpu_description", "interleaved", "measure", "time_call"]

K = TypeVar("K", bound=Hashable)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def native_bf16() -> bool | None:
    """Whether the CPU computes bf16 natively (x86: ``avx512_bf16`` or AMX; Arm: ``bf16``);
    None where ``/proc/cpuinfo`` says nothing (not Linux)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_description() -> str:
    """The CPU model and the flags that decide precision on it (the machines change between sessions)."""
    import os
    import platform

    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:
        name += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    flags = set(info.get("flags", "").split())
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} CPUs, {' '.join(have) or 'no avx512'}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(keys: Iterable[K], rounds: int) -> list[K]:
    """The order to time ``keys`` in: ``rounds`` rounds of each key once, the rounds being
    the rows of a balanced Latin square (Williams design): in ``n`` rounds of ``n`` keys
    (``2n`` when ``n`` is odd) every key runs once in every position and, within the
    rounds, right after every other key once (twice). A path pays for the caches and heap
    the previous one left; in one fixed order the same module was measured 3-17% slower
    in the row after SPAN than in its own (BENCHMARKS.md)."""
    keys = list(keys)
    n = len(keys)
    first, low, high = [0], 1, n - 1  # 0, 1, n-1, 2, n-2, ...
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    order = []
    for r in range(rounds):
        row = [keys[(i + r) % n] for i in first]
        order += row[::-1] if (r // n) % 2 else row
    return order


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
