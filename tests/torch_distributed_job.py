"""Run by test_distributed.py: plain torch.distributed (gloo, 2 processes) with DistributedTracker."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.distributed as dist
import torch.multiprocessing as mp

from nn_tracker.distributed import DistributedTracker


def work(rank: int, out: str, port: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    with (
        DistributedTracker(
            output_dir=out, intensity_g_per_kwh=300, interval_s=0.01, checkpoint_interval_s=None, run_id="plain"
        ) as run,
        run.tracker.phase("training"),
    ):
        sum(i * i for i in range(300_000))
        run.tracker.add_units(10 * (rank + 1), kind="sample")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(work, args=(sys.argv[1], sys.argv[2]), nprocs=2)
