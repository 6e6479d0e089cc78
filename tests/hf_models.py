"""A tiny, randomly initialised BERT classifier and random padded sentences for Trainer tests (no download)."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments


class Sentences(torch.utils.data.Dataset):
    """Random token ids padded after a random length: the attention mask sums to fewer tokens than the ids."""

    def __init__(self, count: int, length: int = 12, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (count, length), generator=generator)
        self.lengths = torch.randint(2, length + 1, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = (torch.arange(self.ids.shape[1]) < self.lengths[index]).long()
        return {"input_ids": self.ids[index] * mask, "attention_mask": mask, "labels": self.ids[index, 0] % 2}

    def batch(self, count: int) -> dict[str, torch.Tensor]:
        """The first ``count`` samples as one batch."""
        items = [self[i] for i in range(count)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def tokens(self) -> int:
        """The real (unpadded) tokens of the whole dataset."""
        return int(self.lengths.sum())


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    return BertForSequenceClassification(config)


def arguments(out, **overrides) -> TrainingArguments:
    options = dict(
        output_dir=str(out),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        num_train_epochs=2,
        logging_steps=2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    options.update(overrides)
    return TrainingArguments(**options)
