"""Fine-tune a tiny, randomly initialised BERT classifier with the Hugging Face ``Trainer``, tracked.

Nothing is downloaded: the model is built from a config and the data are random token ids with
padding. Run ``python examples/transformers_train.py``; reports land in ``--output-dir``. The one
line nn_tracker adds is ``callbacks=[NNTrackerCallback(...)]``.
"""

from __future__ import annotations

import argparse

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from nn_tracker.integrations.transformers import NNTrackerCallback


class RandomSentences(torch.utils.data.Dataset):
    """Random token ids, padded to ``length`` after a random number of tokens (for the attention mask)."""

    def __init__(self, count: int, length: int = 16, vocab: int = 100, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, vocab, (count, length), generator=generator)
        self.lengths = torch.randint(length // 2, length + 1, (count,), generator=generator)
        self.labels = (self.ids[:, 0] % 2).long()  # learnable: the parity of the first token

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = (torch.arange(self.ids.shape[1]) < self.lengths[index]).long()
        return {"input_ids": self.ids[index] * mask, "attention_mask": mask, "labels": self.labels[index]}


def main() -> None:
    """Train, evaluate each epoch, predict; print each stage's energy and per-unit carbon."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--output-dir", default="nn_tracker_reports")
    parser.add_argument("--location", default="FR")
    options = parser.parse_args()

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model = BertForSequenceClassification(config)
    training = TrainingArguments(
        output_dir=f"{options.output_dir}/checkpoints",
        num_train_epochs=options.epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        eval_strategy="epoch",
        logging_steps=4,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
    )
    callback = NNTrackerCallback(
        location=options.location, project_name="transformers-demo", output_dir=options.output_dir
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=RandomSentences(options.samples),
        eval_dataset=RandomSentences(64, seed=1),
        callbacks=[callback],  # the one line nn_tracker adds
    )
    trainer.train()
    trainer.predict(RandomSentences(128, seed=2))

    for stage, report in zip(callback.stages, callback.reports, strict=True):
        print(f"{stage.stage}: {report.energy_kwh * 3.6e6:.1f} J, report {stage.report}")
        for kind in ("sample", "token"):
            for phase, figures in report.units[kind].by_phase.items() if kind in report.units else ():
                carbon = figures.carbon_g_per_unit
                print(f"  {figures.count:,.0f} {kind}s in {phase}: {carbon:.3g} gCO2e per {kind}")


if __name__ == "__main__":
    main()
