"""torchrun's share of ``seemore upscale``: which rank this process is, and every rank's
summary gathered for rank 0 (which then joins the videos and reports for all)."""

from __future__ import annotations

from .batch import Summary

__all__ = ["ranks", "gather"]


def ranks() -> tuple[int, int, str] | None:
    """``(rank, world size, device)`` under torchrun with more than one process, else None.

    Each rank takes every world-th file of the sorted inputs (the same list on every rank)
    and writes only its own outputs; the device is ``cuda:LOCAL_RANK`` where CUDA is, else
    the CPU. Each rank keeps the thread count a single process would use, so its outputs are
    the single process's bytes; ``--threads`` shares a machine's cores between its ranks
    (the outputs then equal a single process run with the same ``--threads``)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return int(os.environ["RANK"]), world, device


def gather(summary: Summary) -> Summary:
    """Every rank's summary, summed (gloo: works with or without GPUs)."""
    from datetime import timedelta

    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(days=7))  # ranks may spend hours on long videos
    try:
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, summary)
    finally:
        dist.destroy_process_group()
    total = Summary(joins=parts[0].joins)  # the same list on every rank
    for part in parts:
        total.done += part.done
        total.skipped += part.skipped
        total.failed += part.failed
        total.remedies |= part.remedies
        total.strengths += part.strengths
        total.seconds = max(total.seconds, part.seconds)
    return total
