"""Run by test_distributed.py: Lightning DDP on CPU, 2 processes, with NNTrackerCallback.

Lightning re-launches this script for rank 1, so it must be a standalone script. The job's default
process group is gloo, but every collective that nn_tracker itself issues on it fails, as it would
on NCCL (which serves only CUDA tensors, and objects only on the right CUDA device): nn_tracker must
use a group of its own. Each rank sees the two simulated GPUs (counters moving in real time).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nccl_like
from lightning_models import TinyRegressor, loader, pl

from nn_tracker.integrations.lightning import NNTrackerCallback

nccl_like.install()


class SlowRegressor(TinyRegressor):
    def training_step(self, batch, batch_idx):
        time.sleep(0.1)
        return super().training_step(batch, batch_idx)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    callback = NNTrackerCallback(
        output_dir=str(out / "reports"),
        location="FR",
        interval_s=0.05,
        checkpoint_interval_s=None,
        run_id="ddp",
        log_every_n_steps=1,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=2,
        callbacks=[callback],
        default_root_dir=out,
        logger=pl.loggers.CSVLogger(out, name="logs"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(SlowRegressor(), loader(64, batch=8))
