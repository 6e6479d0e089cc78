"""Run by test_distributed.py: plain torch.distributed with DistributedTracker, several simulated nodes.

    python torch_distributed_job.py OUT PORT NODES PROCESSES_PER_NODE BACKEND [--every-rank-measures-all]
        [--slow-rank-0]

Each rank gets the node identity ``node-N`` (so one machine plays several nodes) and sees its node's
simulated GPUs (GPU-nN-I at 100 + 50 x I W, counters moving in real time). ``cuda:gloo`` as the
backend serves only CUDA tensors, like NCCL: a CPU tensor or a pickled object on the default group
fails. ``--every-rank-measures-all`` is the mutation the tests must catch: every rank measures its
node's CPU, RAM and every GPU it sees. ``--slow-rank-0``: rank 0 reaches the end 1.5 s after the
others, which wait for it in ``stop()``.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.distributed as dist
import torch.multiprocessing as mp

GPUS_PER_NODE = int(os.environ.get("NN_TRACKER_TEST_GPUS", "2"))
SECONDS = 2.0


def gpu_watts(index: int) -> float:
    return 100.0 + 50.0 * index


def work(rank: int, out: str, port: str, nodes: int, per_node: int, backend: str, mutate: bool, slow: bool) -> None:
    node = rank // per_node
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=port,
        NN_TRACKER_NODE_ID=f"node-{node}",
        FAKE_NVML_REALTIME="1",
        FAKE_NVML_DEVICES=";".join(f"Sim GPU|GPU-n{node}-{i}|{gpu_watts(i)}" for i in range(GPUS_PER_NODE)),
    )
    import nn_tracker.distributed as distributed

    if mutate:
        correct = distributed.assign_roles

        def every_rank_measures_all(entries):
            return [
                distributed.Role(r.node, r.rank, r.world_size, True, tuple(e["gpu_uuids"]), (e["pid"],))
                for r, e in zip(correct(entries), entries, strict=True)
            ]

        distributed.assign_roles = every_rank_measures_all
    dist.init_process_group(backend, rank=rank, world_size=nodes * per_node)
    with (
        distributed.DistributedTracker(
            output_dir=out, intensity_g_per_kwh=300, interval_s=0.05, checkpoint_interval_s=None, run_id="plain"
        ) as run,
        run.tracker.phase("training"),
    ):
        time.sleep(SECONDS + (1.5 if slow and rank == 0 else 0.0))
        run.tracker.add_units(10 * (rank + 1), kind="sample")
    if rank == 0:
        assert run.report().status == "completed"  # the with form gives the report
    dist.destroy_process_group()


if __name__ == "__main__":
    out, port, nodes, per_node, backend = sys.argv[1:6]
    mutate = "--every-rank-measures-all" in sys.argv
    slow = "--slow-rank-0" in sys.argv
    mp.spawn(
        work, args=(out, port, int(nodes), int(per_node), backend, mutate, slow), nprocs=int(nodes) * int(per_node)
    )
