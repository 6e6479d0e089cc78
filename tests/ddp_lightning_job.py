"""Run by test_distributed.py: Lightning DDP on CPU (gloo), 2 processes, with NNTrackerCallback.

Lightning re-launches this script for rank 1, so it must be a standalone script.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_models import TinyRegressor, loader, pl

from nn_tracker.integrations.lightning import NNTrackerCallback

if __name__ == "__main__":
    out = Path(sys.argv[1])
    callback = NNTrackerCallback(
        output_dir=str(out / "reports"), location="FR", interval_s=0.01, checkpoint_interval_s=None, run_id="ddp"
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=2,
        callbacks=[callback],
        default_root_dir=out,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(TinyRegressor(), loader(64, batch=8))
