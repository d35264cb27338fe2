"""Padding-free batches with TRL's truncation kept (`smol_padding_free`).

```yaml
smol_padding_free: true   # or let a memory preset turn it on
```

Each batch packs its sequences into rows, `position_ids` restarting at each one and no attention mask, while TRL still
truncates rows to `max_length` (TRL's own `padding_free` does not allow that without packing). With a varlen kernel
(FlashAttention) the micro-batch is one row; with any other kernel the rows are never longer than the micro-batch's
longest sequence, so the batch never computes more tokens or attention pairs than a padded one. The loss is the same
as with padded batches. The collator and the guard against packed batches that would mix sequences are in
`trl_smol.data.padding_free`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.padding_free import (
    PACKED_ATTENTION,
    guard_packed_batches,
    packed_attention_supported,
    padding_free_collator,
)
from .base import Decision, RunContext
from .lever import PresetLever


@dataclass
class PaddingFreeArguments:
    """
    smol_padding_free (`bool`, *optional*, defaults to `False`):
        Collate each batch padding-free (its sequences in one row, `position_ids` restarting at each one, no attention
        mask) while TRL still truncates rows to `max_length`, which TRL's own `padding_free` does not allow without
        packing. Turned on by a memory preset unless `packing` or `padding_free` is set. Needs an attention
        implementation that separates packed sequences (`eager`, `sdpa`, `flash_attention_2/3`, `flex_attention`). The
        loss is the same as with padded batches.
    """

    smol_padding_free: bool = field(
        default=False,
        metadata={
            "help": "Padding-free batches (one row, position_ids, no attention mask) with TRL's truncation to "
            "max_length kept. A memory preset turns it on unless packing or padding_free is set."
        },
    )


class PaddingFree(PresetLever):
    name = "padding_free"
    setting = "smol_padding_free"
    banner_key = "batches"

    def proposal(self, context: RunContext) -> tuple[Any, str] | None:
        args = context.args
        if args.packing or args.padding_free or context.is_set("packing") or context.is_set("padding_free"):
            return None  # the user chose TRL's own batch form
        return True, "no padding computed; the same loss (TRL still truncates)"

    def problem(self, context: RunContext, value: Any) -> str | None:
        if context.custom_collator:
            return "a data_collator was passed, and padding-free batches need TRL's collator"
        if context.vision:
            return "the dataset has images, whose collator cannot be padding-free"
        attention = context.attention
        if not packed_attention_supported(attention):
            kernels = ", ".join(PACKED_ATTENTION)
            return f"attn_implementation={attention} does not separate packed sequences ({kernels} do)"
        return None

    def describe(self, decision: Decision) -> str | None:
        return f"padding-free ({decision.reason})" if decision.on else None

    def install(self, decision: Decision, trainer: Any) -> Any:
        if not decision.on:
            return None
        # TRL prepared (and truncated) the dataset as for padded batches; only the collation changes.
        # With a varlen kernel, TRL's one row per micro-batch; otherwise rows no longer than the longest sequence,
        # which never cost more than padding (trl_smol/data/padding_free.py).
        attention = getattr(trainer.model.config, "_attn_implementation", None)
        trainer.data_collator = padding_free_collator(trainer.processing_class.pad_token_id, trainer.args, attention)
        return guard_packed_batches(trainer.model)
