"""Run by test_train via torchrun: trains in a process group this script opened (so the
trainer must leave it open), then saves this rank's weights and what ``_ranks_reduce``
makes of rank + 1 on every rank."""

import gc
import sys

import torch
import torch.distributed as dist

from seemore_sr.training.config import load_config
from seemore_sr.training.trainer import _ranks_reduce, train

run, *sets = sys.argv[1:]
dist.init_process_group("gloo")
result = train(load_config(None, sets), run, progress=False)
rank = dist.get_rank()
torch.save(result["model"].state_dict(), f"{run}/rank{rank}.pt")  # each rank's own trained module
torch.save(torch.tensor(_ranks_reduce(rank + 1.0)), f"{run}/sum{rank}.pt")
del result
gc.collect()  # nothing that uses the group outlives it
dist.barrier()
dist.destroy_process_group()
