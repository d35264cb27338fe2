"""Padding-free batches with TRL's truncation kept, and a guard against packed batches that would mix sequences.

```python
from trl_smol.data.padding_free import guard_packed_batches, padding_free_collator

collator = padding_free_collator(pad_token_id=tokenizer.pad_token_id, args=args)  # TRL's collator, padding-free
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


def padding_free_collator(pad_token_id: int, args: Any) -> DataCollatorForLanguageModeling:
    """TRL's language-modeling collator in padding-free mode: one row, `position_ids`, `cu_seq_lens`, no mask."""
    return DataCollatorForLanguageModeling(
        pad_token_id=pad_token_id, padding_free=True, pad_to_multiple_of=getattr(args, "pad_to_multiple_of", None)
    )


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
