"""Padding-free batches with TRL's truncation kept, and a guard against packed batches that would mix sequences.

```python
from trl_smol.data.padding_free import guard_packed_batches, padding_free_collator

collator = padding_free_collator(tokenizer.pad_token_id, args, "sdpa")  # rows no longer than the longest sequence
handle = guard_packed_batches(model)  # a packed batch with an attention mask or a KV cache raises
```

A padding-free batch puts its sequences in one row: `position_ids` restart at 0 where each one starts and there is no
attention mask, so transformers keeps them apart (a block-diagonal mask for `eager` / `sdpa` / `flex_attention`, the
`cu_seq_lens` that TRL's collator adds for the varlen FlashAttention kernels). SmolLM3's NoPE layers (every 4th)
have no rotary positions at all, so only that separation keeps one sequence from attending to another. Three ways to
lose it silently: an attention mask passed along (all ones: transformers then never looks for packed sequences), no
`position_ids`, or a KV cache (transformers skips its packed-sequence check when one exists). Training passes none of
these; a custom forward might, and [`guard_packed_batches`] turns that into an error.

TRL's own `padding_free=True` refuses `max_length` without packing, because its truncation is skipped then. Here TRL
prepares the dataset (and truncates) as in a padded run and only the collator changes, so the loss is the same as with
padded batches: the same tokens are predicted from the same context.
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

# Attention implementations that separate packed sequences given `position_ids` and no mask (transformers 5).
PACKED_ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


class PackedBatchError(ValueError):
    """A packed (padding-free) batch reached a forward that would let its sequences attend to each other."""


def packed_attention_supported(attn_implementation: str | None) -> bool:
    """Whether `attn_implementation` (None: transformers' default, `sdpa`) keeps packed sequences apart."""
    name = attn_implementation or "sdpa"
    return name in PACKED_ATTENTION or name.endswith(("flash-attn", "flash-attn2", "flash-attn3", "flash_attention_2"))


# Kernels that compute only the pairs inside each packed sequence (varlen): one long row costs no more than its parts.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


def is_varlen(attn_implementation: str | None) -> bool:
    name = attn_implementation or "sdpa"
    return name in VARLEN_ATTENTION or name.endswith(("flash-attn", "flash-attn2", "flash-attn3"))


def padding_free_collator(pad_token_id: int, args: Any, attn_implementation: str | None = None):
    """The padding-free collator for the attention kernel the model runs with.

    A varlen kernel (FlashAttention 2/3) gets TRL's own: the micro-batch in one row, `cu_seq_lens` for the kernel. Any
    other (`sdpa`, `eager`, `flex_attention`) computes every pair of a row under a block mask, so one row of the whole
    micro-batch would cost more than padding (8 rows of 1024 tokens: one 8192-token row, 8x the attention pairs):
    those get [`BoundedRowsCollator`], whose rows are never longer than the micro-batch's longest sequence.
    """
    pad_to = getattr(args, "pad_to_multiple_of", None)
    if is_varlen(attn_implementation):
        return DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True, pad_to_multiple_of=pad_to)
    return BoundedRowsCollator(pad_token_id=pad_token_id, padding_free=True, pad_to_multiple_of=pad_to)


def first_fit_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` packed first-fit decreasing into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if row is None:
            rows.append([index])
            room.append(capacity - lengths[index])
        else:
            rows[row].append(index)
            room[row] -= lengths[index]
    return rows


class BoundedRowsCollator(DataCollatorForLanguageModeling):
    """Padding-free batches whose rows are never longer than the micro-batch's longest sequence.

    The sequences are packed first-fit decreasing into rows of at most that length (`position_ids` restarting at each
    sequence), and each row is filled up to the longest row with a padding run that is a sequence of its own (its
    `position_ids` restart too, its labels are -100), so no attention mask is needed and no sequence sees another.
    With R rows of length T <= L (the longest sequence) and R <= B (the micro-batch), the batch computes at most the
    B x L tokens and B x L^2 attention pairs of a padded batch, and fewer whenever short sequences share a row. The
    loss is the padded batch's: the same tokens predicted from the same context.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = [len(example["input_ids"]) for example in examples]
        rows = [super(BoundedRowsCollator, self).torch_call([examples[i] for i in row])
                for row in first_fit_rows(lengths, max(lengths))]  # fmt: skip
        width = max(row["input_ids"].size(1) for row in rows)
        keys = ("input_ids", "labels", "position_ids")
        fill = {"input_ids": self.pad_token_id, "labels": -100}
        batch = {key: torch.cat([_fill_row(row[key], width, fill.get(key)) for row in rows]) for key in keys}
        # Sequence boundaries over the flattened batch, as TRL's collator marks a padding-free batch (the guard below
        # reads them); the varlen kernels that would use them get TRL's one-row collator instead.
        flat = batch["position_ids"].reshape(-1)
        starts = (flat == 0).nonzero().flatten()
        cu_seq_lens = torch.cat([starts, torch.tensor([flat.numel()])]).to(torch.int32)
        batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = cu_seq_lens
        batch["max_length_q"] = batch["max_length_k"] = int(cu_seq_lens.diff().max())
        return batch


def _fill_row(row: torch.Tensor, width: int, value: int | None) -> torch.Tensor:
    """`row` ([1, n]) filled to `width` with `value`, or for `position_ids` (value None) with a run restarting at 0."""
    missing = width - row.size(1)
    if missing == 0:
        return row
    tail = torch.arange(missing, dtype=row.dtype) if value is None else torch.full((missing,), value, dtype=row.dtype)
    return torch.cat([row, tail.unsqueeze(0)], dim=1)


def _packed(kwargs: dict[str, Any]) -> bool:
    # TRL's padding-free collator marks a batch with `cu_seq_lens_q`; more than one sequence when it has > 2 entries.
    # Reading `numel()` needs no device sync.
    boundaries = kwargs.get("cu_seq_lens_q")
    return isinstance(boundaries, torch.Tensor) and boundaries.numel() > 2


def check_packed_forward(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    """Forward pre-hook: raise [`PackedBatchError`] for a packed batch with an attention mask or a KV cache."""
    if not _packed(kwargs):
        return
    if kwargs.get("attention_mask") is not None:
        raise PackedBatchError(
            "A padding-free batch (several sequences in one row) was passed with an `attention_mask`: transformers "
            "then lets the sequences attend to each other. Drop `attention_mask` from the inputs (TRL's padding-free "
            "collator never adds one) or set `smol_padding_free: false`."
        )
    if kwargs.get("use_cache") or kwargs.get("past_key_values") is not None:
        raise PackedBatchError(
            "A padding-free batch (several sequences in one row) was passed with a KV cache (`use_cache=True` or "
            "`past_key_values`): transformers skips its packed-sequence check then, mixing the sequences. Pass "
            "`use_cache=False` in the training forward (TRL's `compute_loss` does) or set `smol_padding_free: false`."
        )
    if kwargs.get("position_ids") is None:
        raise PackedBatchError(
            "A padding-free batch (several sequences in one row) was passed without `position_ids`: every token "
            "would see the whole row. Keep the collator's `position_ids` in the inputs."
        )


def guard_packed_batches(model: torch.nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Check every forward of `model` with [`check_packed_forward`] (a torch forward pre-hook; remove it with the
    returned handle)."""
    return model.register_forward_pre_hook(check_packed_forward, with_kwargs=True)
