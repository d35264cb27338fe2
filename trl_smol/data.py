"""Conversation data for SmolLM3 SFT: chat-template kwargs defaults, validation before tokenization.

```python
from trl_smol.data import prepare_conversations

dataset = prepare_conversations(dataset, args=SmolSFTConfig(...), dataset_name="train")
```
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset, IterableDataset

from .config import SmolSFTConfig


def _clean_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Arrow stores a struct column with every key in every row; a None value means "not set in this row"."""
    return {key: value for key, value in (kwargs or {}).items() if value is not None}


def prepare_conversations(
    dataset: Dataset | IterableDataset, *, args: SmolSFTConfig, dataset_name: str = "train"
) -> Dataset | IterableDataset:
    """Merge `args.chat_template_kwargs` (and the stable `today`) under each example's own `chat_template_kwargs`.

    Datasets that are not conversational (no `messages` column) or already tokenized are returned unchanged.
    """
    columns = dataset.column_names or []
    if "messages" not in columns or "input_ids" in columns:
        return dataset
    defaults = args.template_kwargs_for(None)
    if not defaults and "chat_template_kwargs" not in columns:
        return dataset

    def merge(example: dict[str, Any]) -> dict[str, Any]:
        return {"chat_template_kwargs": {**defaults, **_clean_kwargs(example.get("chat_template_kwargs"))}}

    map_kwargs: dict[str, Any] = {}
    if isinstance(dataset, Dataset):
        map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Merging chat template kwargs ({dataset_name})"}
    return dataset.map(merge, **map_kwargs)
