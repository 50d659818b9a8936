"""Run by test_train via torchrun: trains, then saves this rank's weights."""

import sys

import torch
import torch.distributed as dist

from seemore_sr.training.config import load_config
from seemore_sr.training.trainer import train

run, *sets = sys.argv[1:]
result = train(load_config(None, sets), run, progress=False)
rank = dist.get_rank()
torch.save(result["model"].state_dict(), f"{run}/rank{rank}.pt")  # each rank's own trained module
dist.destroy_process_group()
