"""Where ``optimize(model)``'s CPU time goes, by operator (torch.profiler), x4 to 1280x720.

python benchmarks/profile_inference.py [--model tiny-x4] [--calls 3]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from seemore_sr import create_model, optimize
from seemore_sr.bench import cpu_description
from seemore_sr.models.complexity import paper_input_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-x4")
    p.add_argument("--calls", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    fast = optimize(create_model(f"seemore-{args.model}"))
    h, w = paper_input_size(fast.config.scale)
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        for _ in range(2):  # warm-up: oneDNN primitives and allocator pools exist before the measurement
            fast(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.calls):
                fast(x)
    print(f"# machine: {cpu_description()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"# seemore-{args.model}, input {w}x{h}, {args.calls} calls after two warm-ups; times are totals")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


if __name__ == "__main__":
    main()
