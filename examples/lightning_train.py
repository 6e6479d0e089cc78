"""Train a small Lightning model on synthetic data under NNTrackerCallback (CPU, well under a minute).

python examples/lightning_train.py --location FR --output-dir reports
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

from nn_tracker.integrations.lightning import NNTrackerCallback


class Classifier(pl.LightningModule):
    """A two-layer MLP classifying points by a hidden linear rule."""

    def __init__(self, features: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(features, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy loss."""
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Validation accuracy."""
        x, y = batch
        self.log("val_acc", (self(x).argmax(dim=1) == y).float().mean(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Test accuracy."""
        x, y = batch
        self.log("test_acc", (self(x).argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam."""
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def synthetic(samples: int, seed: int, features: int = 32) -> DataLoader:
    """Points labelled by a fixed hidden linear rule."""
    rule = torch.randn(features, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(samples, features, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(x, (x @ rule > 0).long()), batch_size=64, shuffle=False)


def main() -> None:
    """Fit, test, and print where the report is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--location", default="FR")
    parser.add_argument("--output-dir", default="reports")
    args = parser.parse_args()

    torch.manual_seed(0)
    callback = NNTrackerCallback(
        project_name="lightning-demo",
        location=args.location,
        output_dir=args.output_dir,
        formats=("json", "md", "html"),
        log_every_n_steps=20,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        callbacks=[callback],
        logger=pl.loggers.CSVLogger(args.output_dir, name="lightning-logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier()
    trainer.fit(model, synthetic(args.samples, 0), synthetic(args.samples // 4, 1))
    trainer.test(model, synthetic(args.samples // 4, 2), verbose=False)
    for stage, report in zip(("fit", "test"), callback.reports, strict=True):  # one report per stage
        phase = "training" if stage == "fit" else "querying/test"
        per_sample = report.units["sample"].by_phase[phase].carbon_g_per_unit
        print(
            f"{stage}: {report.duration_s:.1f} s, {report.energy_kwh * 1000:.3g} Wh (IT), "
            f"{report.total_carbon_g:.3g} gCO2e; {per_sample:.3g} gCO2e per {phase} sample"
        )
        print(f"  report: {next(p for p in report.paths if p.endswith('.html'))}")
    total_g = sum(s.total_carbon_g for s in callback.stages)
    print(f"fit and test together: {total_g:.3g} gCO2e")


if __name__ == "__main__":
    main()
