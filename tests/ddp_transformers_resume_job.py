"""Run by test_transformers.py under torchrun: the Trainer with DDP on CPU, 2 processes playing 2 nodes, resumed.

    torchrun --nproc_per_node 2 ddp_transformers_resume_job.py OUT first|resume

Each rank is a node of its own (``NN_TRACKER_NODE_ID``) with its own simulated GPU (``GPU-r<rank>`` at
200 + 100 x rank W). ``first`` trains 4 steps and saves ``checkpoint-4``; ``resume`` trains to 8 steps
from it, saving again while running.
"""

import os
import sys
import time
from pathlib import Path

RANK = int(os.environ.get("LOCAL_RANK", "0"))
os.environ.update(
    NN_TRACKER_NODE_ID=f"node-{RANK}",
    FAKE_NVML_DEVICES=f"Sim GPU|GPU-r{RANK}|{200 + 100 * RANK}",
    FAKE_NVML_REALTIME="1",
)

import nccl_like  # noqa: E402
from hf_models import Sentences, arguments, tiny_bert  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from nn_tracker.integrations.transformers import NNTrackerCallback  # noqa: E402

nccl_like.install()


class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.1)  # long enough for the simulated GPUs' counters to move


if __name__ == "__main__":
    out, mode = Path(sys.argv[1]), sys.argv[2]
    callback = NNTrackerCallback(
        output_dir=str(out / "reports"), location="FR", interval_s=0.05, checkpoint_interval_s=None, run_id=mode
    )
    args = arguments(out / "trainer", max_steps=4 if mode == "first" else 8, save_strategy="steps", save_steps=4)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=Sentences(128), callbacks=[callback, Slow()])
    trainer.train(resume_from_checkpoint=str(out / "trainer" / "checkpoint-4") if mode == "resume" else None)
