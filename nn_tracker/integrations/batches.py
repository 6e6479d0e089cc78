"""What a batch holds: samples and tokens, for any framework's batches (no framework imported)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BATCH_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values", "input_values", "x")


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of the batch's first tensor with one.

    A tensor (or array) gives its first dimension; a mapping (``dict``, ``UserDict``, a Hugging Face
    ``BatchEncoding``) its usual keys first (``input_ids``, ``attention_mask``, ``labels``...), then any
    value; a tuple or list its first element with a batch dimension, else, if it holds plain values
    (strings, numbers, 0-d tensors: one per sample), its length. 1 when nothing has a batch dimension.
    """
    size = _first_dimension(batch)
    if size is not None:
        return size
    if isinstance(batch, (list, tuple)) and batch:
        return len(batch)  # one plain value (a string, a number, a 0-d tensor) per sample
    return 1


def _first_dimension(batch: Any) -> int | None:
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) > 0 else None  # a 0-d tensor is one value, not a batch
    if isinstance(batch, Mapping):
        keys = [k for k in BATCH_KEYS if k in batch] + [k for k in batch if k not in BATCH_KEYS]
        return next((size for k in keys if (size := _first_dimension(batch[k])) is not None), None)
    if isinstance(batch, (list, tuple)):
        return next((size for item in batch if (size := _first_dimension(item)) is not None), None)
    return None


def batch_tokens(batch: Any) -> Any | None:
    """Input tokens of a batch, uncounted padding excluded; ``None`` when the batch has no token ids.

    The sum of ``attention_mask`` where the batch has one (padding is not a token the model
    was asked to read), else the number of elements of ``input_ids``. The result is a 0-d tensor
    on the batch's device (not read back, so counting never waits for the accelerator) or an int.
    """
    if not isinstance(batch, Mapping):
        return None
    mask: Any = batch.get("attention_mask")
    ids: Any = batch.get("input_ids")
    if getattr(mask, "shape", None) is not None and hasattr(mask, "sum"):
        return mask.sum()
    if getattr(ids, "shape", None) is not None:
        count = 1
        for size in ids.shape:
            count *= int(size)
        return count
    return None
