"""Run by test_transformers.py under torchrun: the Trainer with DDP on CPU, 2 processes, NNTrackerCallback.

    torchrun --nproc_per_node 2 ddp_transformers_job.py OUT [first|resume]

As in ddp_lightning_job.py, every collective nn_tracker would issue on the job's own (default) group
fails, as on NCCL. Without a mode, each rank sees the two simulated GPUs of the test's environment and
rank 0 saves what reached `on_log`. With ``first`` or ``resume``, each rank is a node of its own
(``NN_TRACKER_NODE_ID``) with its own simulated GPU (``GPU-r<rank>`` at 200 + 100 x rank W): ``first``
trains 4 steps and saves ``checkpoint-4``; ``resume`` trains to 8 steps from it, saving again while
running.
"""

import json
import sys
import time
from pathlib import Path

MODE = sys.argv[2] if len(sys.argv) > 2 else None

import nccl_like  # noqa: E402
import ranks_as_nodes  # noqa: E402
import torch.distributed as dist  # noqa: E402
from hf_models import Sentences, arguments, tiny_bert  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from nn_tracker.integrations.transformers import NNTrackerCallback  # noqa: E402

nccl_like.install()
if MODE is not None:
    ranks_as_nodes.become_a_node_of_its_own()


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
        output_dir=str(out / "reports"),
        location="FR",
        interval_s=0.05,
        checkpoint_interval_s=None,
        run_id=MODE or "ddp",
    )
    if MODE is None:
        args, data, resume = arguments(out / "trainer", logging_steps=1), Sentences(64), None
    else:
        steps = 4 if MODE == "first" else 8
        args = arguments(out / "trainer", max_steps=steps, save_strategy="steps", save_steps=4)
        data = Sentences(128)
        resume = str(out / "trainer" / "checkpoint-4") if MODE == "resume" else None
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=data, callbacks=[recorder, callback, Slow()])
    trainer.train(resume_from_checkpoint=resume)
    if dist.get_rank() == 0 and MODE is None:
        (out / "logged.json").write_text(json.dumps(recorder.logs))
