"""Run by test_distributed.py: Lightning DDP on CPU, 2 processes playing 2 nodes, fit -> checkpoint -> resume -> fit.

    python ddp_lightning_resume_job.py OUT first|resume

Each rank is a node of its own (``NN_TRACKER_NODE_ID``) with its own simulated GPU (``GPU-r<rank>`` at
200 + 100 x rank W), so each rank owns a GPU and the node's CPU and RAM. ``first`` fits one epoch
and checkpoints at its end (``last.ckpt``); ``resume`` fits to two epochs from that checkpoint and
checkpoints again while running, which calls the callback's ``state_dict`` on every rank: the
moment a resumed multi-node fit used to crash the training. Lightning re-launches this script for
rank 1, with ``LOCAL_RANK`` set.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nccl_like  # noqa: E402
from lightning_models import TinyRegressor, loader, pl  # noqa: E402

from nn_tracker.integrations.lightning import NNTrackerCallback  # noqa: E402

nccl_like.install()


class SlowRegressor(TinyRegressor):
    def training_step(self, batch, batch_idx):
        time.sleep(0.1)
        return super().training_step(batch, batch_idx)


if __name__ == "__main__":
    out, mode = Path(sys.argv[1]), sys.argv[2]
    callback = NNTrackerCallback(
        output_dir=str(out / "reports"),
        location="FR",
        interval_s=0.05,
        checkpoint_interval_s=None,
        run_id=mode,
        log_every_n_steps=1,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=1 if mode == "first" else 2,
        callbacks=[callback, pl.callbacks.ModelCheckpoint(dirpath=out / "checkpoints", save_last=True)],
        default_root_dir=out,
        logger=pl.loggers.CSVLogger(out, name=f"logs-{mode}"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    resume_from = out / "checkpoints" / "last.ckpt" if mode == "resume" else None
    trainer.fit(SlowRegressor(), loader(64, batch=8), ckpt_path=resume_from)
