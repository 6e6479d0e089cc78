"""Run by test_transformers.py under torchrun: the Trainer with DDP on CPU, 2 processes, NNTrackerCallback.

As in ddp_lightning_job.py, every collective nn_tracker would issue on the job's own (default) group
fails, as on NCCL; each rank sees the two simulated GPUs. Rank 0 saves what reached `on_log`.
"""

import json
import sys
import time
from pathlib import Path

import nccl_like
import torch.distributed as dist
from hf_models import Sentences, arguments, tiny_bert
from transformers import Trainer, TrainerCallback

from nn_tracker.integrations.transformers import NNTrackerCallback

nccl_like.install()


class Recorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and "energy/total_kwh" in logs:
            self.logs.append(dict(logs))


class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.1)  # long enough for the simulated GPUs' counters to move


if __name__ == "__main__":
    out = Path(sys.argv[1])
    recorder = Recorder()
    callback = NNTrackerCallback(
        output_dir=str(out / "reports"), location="FR", interval_s=0.05, checkpoint_interval_s=None, run_id="ddp"
    )
    args = arguments(out / "trainer", logging_steps=1)
    Trainer(model=tiny_bert(), args=args, train_dataset=Sentences(64), callbacks=[recorder, callback, Slow()]).train()
    if dist.get_rank() == 0:
        (out / "logged.json").write_text(json.dumps(recorder.logs))
