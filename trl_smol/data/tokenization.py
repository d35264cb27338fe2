"""Batched rendering and tokenization of conversations, with the ids and assistant masks of TRL's own path.

```python
from trl_smol.data import tokenize_conversations

dataset = tokenize_conversations(dataset, tokenizer, args=args, dataset_name="train")  # input_ids, labels
```

A row that TRL's truncation to `max_length` would leave without any label (every assistant token past the cut) is
counted here: with `invalid_rows: error` it is a [`RowCutToNothingError`] naming the row; with `drop` it is listed in
the dropped-rows table and TRL drops it as usual.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import Dataset, IterableDataset

from ..templating import canonical_tool_calls
from .validation import (
    InvalidConversationError,
    _clean_kwargs,
    _print_dropped,
    conversation_columns,
    logger,
    row_label,
)

if TYPE_CHECKING:
    from ..config import SmolSFTConfig

CUT_REASON = "cut to nothing by max_length"
_CUT_COLUMN = "_trl_smol_cut_to_nothing"


class RowCutToNothingError(InvalidConversationError):
    """Truncation to `max_length` would leave a row with no trained token; the message names the row and the fix."""


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


def cut_to_nothing(labels: list[int], max_length: int | None, truncation_mode: str = "keep_start") -> str | None:
    """Why truncating `labels` to `max_length` as TRL does leaves no trained token, or `None` when some remain.

    ```python
    >>> cut_to_nothing([-100, -100, -100, 7, 8], max_length=3)
    'it has 5 tokens and all 2 of its assistant tokens start after token 3 (the first is token 4)'
    ```
    """
    if max_length is None or max_length <= 0 or len(labels) <= max_length:
        return None
    if truncation_mode not in ("keep_start", "keep_end"):
        return None  # TRL rejects the mode itself
    trained = np.flatnonzero(np.asarray(labels) != -100)
    total = len(labels)
    if not len(trained):
        return None  # nothing to train before the cut either: not truncation's doing
    if truncation_mode == "keep_end":
        if trained[-1] >= total - max_length:
            return None
        return (
            f"it has {total} tokens and all {len(trained)} of its assistant tokens end before its last {max_length} "
            f"(the last is token {trained[-1] + 1})"
        )
    if trained[0] < max_length:
        return None
    return (
        f"it has {total} tokens and all {len(trained)} of its assistant tokens start after token {max_length} "
        f"(the first is token {trained[0] + 1})"
    )


def _cut_error(dataset_name: str, row: int, detail: str, args: SmolSFTConfig, total: int) -> RowCutToNothingError:
    return RowCutToNothingError(
        f"Dataset '{dataset_name}', {row_label(row)}: max_length={args.max_length} cuts it to nothing trainable: "
        f"{detail}, so truncation_mode={args.truncation_mode} leaves every label at -100 and TRL would drop the row. "
        f"Raise `max_length` (the whole row is {total} tokens), shorten the system prompt, or set `invalid_rows: "
        "drop` to skip such rows (a count is printed)."
    )


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
    packing: bool | None = None,
    check_truncation: bool = True,
) -> Dataset | IterableDataset:
    """Render and tokenize `messages` in batches; add `input_ids` and `labels` (-100 outside assistant turns when
    `args.assistant_only_loss`).

    Gives the ids and masks of TRL's per-example `apply_chat_template(..., return_assistant_tokens_mask=True)` path:
    each conversation is rendered once by transformers' Jinja renderer with its own `tools` and
    `chat_template_kwargs`, then a batch is tokenized in one call to the Rust tokenizer, and the masks come from its
    character offsets. Tool-call arguments given as JSON strings are normalised so that they render like dicts.
    Truncation and packing are left to TRL, which applies them to `input_ids`/`labels` as usual.

    Rows that truncation to `args.max_length` (`args.truncation_mode`) would leave with no label are counted (not
    with packing, which cuts nothing per row; `packing` is what TRL packs this dataset with, by default
    `args.packing` for `train` and `args.eval_packing`, when set, for other names): `args.invalid_rows="error"`
    raises [`RowCutToNothingError`] at the first, `"drop"` prints them in the dropped-rows table and leaves the drop to
    TRL. `check_truncation=False` skips this (`trl-smol render` shows such rows instead).
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    tokenizer = processing_class
    special_tokens = dict(tokenizer.special_tokens_map)
    assistant_only_loss = bool(args.assistant_only_loss)
    columns = list(dataset.column_names or [])
    input_columns = [name for name in ("messages", "chat_template_kwargs", "tools") if name in columns]
    if packing is None:  # as TRL decides: `eval_packing`, when set, for the evaluation datasets
        eval_packing = getattr(args, "eval_packing", None)
        packing = args.packing if dataset_name == "train" or eval_packing is None else eval_packing
    max_length = args.max_length if check_truncation and assistant_only_loss and not packing else None
    drop = args.invalid_rows == "drop"
    is_map_style = isinstance(dataset, Dataset)

    def tokenize_batch(*batch_and_indices: list) -> dict[str, list]:
        *batch, indices = batch_and_indices
        messages, kwargs, tools = conversation_columns(input_columns, batch)
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
                    f"Dataset '{dataset_name}', {row_label(row)}: `assistant_only_loss=True` but the chat template "
                    "marks no assistant token, so the row would train nothing. Use a template with `{% generation %}` "
                    "markers (the SmolLM3 template has them) or set `assistant_only_loss: false`."
                )
            labels.append(np.where(mask, np.asarray(ids), -100).tolist())
        output = {"input_ids": input_ids, "labels": labels}
        if max_length is not None:
            cut = []
            for row, row_labels in zip(indices, labels, strict=True):
                detail = cut_to_nothing(row_labels, max_length, args.truncation_mode)
                if detail is not None and not drop:
                    raise _cut_error(dataset_name, row, detail, args, len(row_labels))
                if detail is not None and not is_map_style:  # streamed: no count at the end, so say it per row
                    logger.warning(f"Dropping {row_label(row)} of dataset '{dataset_name}': {CUT_REASON} ({detail}).")
                cut.append(detail is not None)
            if drop and is_map_style:
                output[_CUT_COLUMN] = cut
        return output

    map_kwargs: dict[str, Any] = {}
    if is_map_style:
        map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Tokenizing {dataset_name} dataset (trl-smol)"}
    dataset = dataset.map(tokenize_batch, batched=True, with_indices=True, input_columns=input_columns, **map_kwargs)
    if max_length is not None and drop and is_map_style and _CUT_COLUMN in dataset.column_names:  # absent: no rows
        cut_rows = [row for row, cut in enumerate(dataset[_CUT_COLUMN]) if cut]
        if cut_rows:  # TRL drops them after truncating; the table says so before
            _print_dropped(dataset_name, Counter({CUT_REASON: len(cut_rows)}), {CUT_REASON: cut_rows[0]}, len(dataset))
        dataset = dataset.remove_columns(_CUT_COLUMN)
    return dataset
