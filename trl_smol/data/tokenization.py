"""Batched rendering and tokenization of conversations, with the ids and assistant masks of TRL's own path.

```python
from trl_smol.data import tokenize_conversations

dataset = tokenize_conversations(dataset, tokenizer, args=args, dataset_name="train")  # input_ids, labels
```
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from datasets import Dataset, IterableDataset

from ..config import SmolSFTConfig
from ..templating import canonical_tool_calls
from .validation import _clean_kwargs


def can_tokenize_fast(dataset: Dataset | IterableDataset, processing_class: Any) -> bool:
    """Whether [`tokenize_conversations`] handles `dataset`: untokenized `messages` rows and a fast tokenizer.

    Prompt-completion datasets, processors (vision) and slow tokenizers are left to TRL's per-example path.
    """
    from transformers import PreTrainedTokenizerBase

    columns = set(dataset.column_names or [])
    return (
        isinstance(processing_class, PreTrainedTokenizerBase)
        and bool(getattr(processing_class, "is_fast", False))
        and "messages" in columns
        and not columns & {"input_ids", "prompt", "completion", "labels"}
    )


def assistant_token_mask(offsets: Iterable[tuple[int, int]], spans: list[tuple[int, int]]) -> np.ndarray:
    """1 for each token whose characters overlap a `{% generation %}` span, as `apply_chat_template` computes it."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    mask = np.zeros(len(offsets), dtype=bool)
    for start, end in spans:
        mask |= (offsets[:, 1] > start) & (offsets[:, 0] < end)
    return mask


def _drop_none_keys(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # As `apply_chat_template` does: Arrow fills absent struct keys (`tool_calls`, ...) with None in every message.
    return [{key: value for key, value in message.items() if value is not None} for message in messages]


def tokenize_conversations(
    dataset: Dataset | IterableDataset,
    processing_class: Any,
    *,
    args: SmolSFTConfig,
    chat_template: str | None = None,
    dataset_name: str = "train",
) -> Dataset | IterableDataset:
    """Render and tokenize `messages` in batches; add `input_ids` and `labels` (-100 outside assistant turns when
    `args.assistant_only_loss`).

    Gives the ids and masks of TRL's per-example `apply_chat_template(..., return_assistant_tokens_mask=True)` path:
    each conversation is rendered once by transformers' Jinja renderer with its own `tools` and
    `chat_template_kwargs`, then a batch is tokenized in one call to the Rust tokenizer, and the masks come from its
    character offsets. Tool-call arguments given as JSON strings are normalised so that they render like dicts.
    Truncation and packing are left to TRL, which applies them to `input_ids`/`labels` as usual.
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    tokenizer = processing_class
    special_tokens = dict(tokenizer.special_tokens_map)
    assistant_only_loss = bool(args.assistant_only_loss)
    columns = list(dataset.column_names or [])
    input_columns = [name for name in ("messages", "chat_template_kwargs", "tools") if name in columns]

    def tokenize_batch(*batch_and_indices: list) -> dict[str, list]:
        *batch, indices = batch_and_indices
        values = dict(zip(input_columns, batch, strict=True))
        messages = values["messages"]
        kwargs = values.get("chat_template_kwargs") or [None] * len(messages)
        tools = values.get("tools") or [None] * len(messages)
        texts, spans = [], []
        for row_messages, row_kwargs, row_tools in zip(messages, kwargs, tools, strict=True):
            row_tools = json.loads(row_tools) if isinstance(row_tools, str) else row_tools
            template = tokenizer.get_chat_template(chat_template, row_tools)
            rendered, generation_indices = render_jinja_template(
                conversations=[canonical_tool_calls(_drop_none_keys(row_messages))],
                tools=row_tools,
                chat_template=template,
                return_assistant_tokens_mask=assistant_only_loss,
                **{**special_tokens, **_clean_kwargs(row_kwargs)},
            )
            texts.append(rendered[0])
            spans.append(generation_indices[0] if generation_indices else [])
        encoded = tokenizer(texts, add_special_tokens=False)
        input_ids = encoded["input_ids"]
        if not assistant_only_loss:
            return {"input_ids": input_ids, "labels": [list(ids) for ids in input_ids]}
        labels = []
        for row, ids, encoding, row_spans in zip(indices, input_ids, encoded.encodings, spans, strict=True):
            mask = assistant_token_mask(encoding.offsets, row_spans)
            if not mask.any():
                raise RuntimeError(
                    f"Dataset '{dataset_name}', row {row}: `assistant_only_loss=True` but the chat template marks no "
                    "assistant token, so the row would train nothing. Use a template with `{% generation %}` "
                    "markers (the SmolLM3 template has them) or set `assistant_only_loss: false`."
                )
            labels.append(np.where(mask, np.asarray(ids), -100).tolist())
        return {"input_ids": input_ids, "labels": labels}

    map_kwargs: dict[str, Any] = {}
    if isinstance(dataset, Dataset):
        map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Tokenizing {dataset_name} dataset (trl-smol)"}
    return dataset.map(tokenize_batch, batched=True, with_indices=True, input_columns=input_columns, **map_kwargs)
