"""Run by test_distributed.py: Lightning DDP on CPU, 2 processes, with NNTrackerCallback.

    python ddp_lightning_job.py OUT [first|resume]

Lightning re-launches this script for rank 1 (with ``LOCAL_RANK`` set), so it must be a standalone
script. The job's default process group is gloo, but every collective that nn_tracker itself issues on
it fails, as it would on NCCL (which serves only CUDA tensors, and objects only on the right CUDA
device): nn_tracker must use a group of its own.

Without a mode, both ranks are on one node and see the two simulated GPUs of the test's environment.
With ``first`` or ``resume``, each rank is a node of its own (``NN_TRACKER_NODE_ID``) with its own
simulated GPU (``GPU-r<rank>`` at 200 + 100 x rank W): ``first`` fits one epoch and checkpoints at its
end (``last.ckpt``); ``resume`` fits to two epochs from that checkpoint and checkpoints again while
running, which calls the callback's ``state_dict`` on every rank (where a resumed multi-node fit used
to crash the training).
"""

import sys
import time
from pathlib import Path

MODE = sys.argv[2] if len(sys.argv) > 2 else None
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nccl_like  # noqa: E402
import ranks_as_nodes  # noqa: E402
from lightning_models import TinyRegressor, loader, pl  # noqa: E402

from nn_tracker.integrations.lightning import NNTrackerCallback  # noqa: E402

nccl_like.install()
if MODE is not None:
    ranks_as_nodes.become_a_node_of_its_own()


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
        run_id=MODE or "ddp",
        log_every_n_steps=1,
    )
    checkpoints = [pl.callbacks.ModelCheckpoint(dirpath=out / "checkpoints", save_last=True)] if MODE else []
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=1 if MODE == "first" else 2,
        callbacks=[callback, *checkpoints],
        default_root_dir=out,
        logger=pl.loggers.CSVLogger(out, name=f"logs-{MODE}" if MODE else "logs"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(MODE),
    )
    resume_from = out / "checkpoints" / "last.ckpt" if MODE == "resume" else None
    trainer.fit(SlowRegressor(), loader(64, batch=8), ckpt_path=resume_from)
