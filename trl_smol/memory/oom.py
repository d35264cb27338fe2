"""Out of memory during training: a message that names the measured peak, the estimate and what to change, and the
retry at half the batch under `memory_preset: auto` with `auto_find_batch_size`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hardware import GIB
from .measure import measured_peak_bytes
from .tiers import Preset, next_smaller_tier

if TYPE_CHECKING:
    from .preset_result import PresetResult

_OOM_MARKERS = (" out of memory", "MPS backend out of memory", "DefaultCPUAllocator: can't allocate memory")


class PresetOutOfMemoryError(MemoryError):
    """Out of memory during training, with the measured peak, the estimate and what to change."""


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, PresetOutOfMemoryError):
        return False
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error) for marker in _OOM_MARKERS)


def out_of_memory_message(args: Any, error: BaseException, preset: PresetResult | None) -> str:
    peak, what = measured_peak_bytes()
    parts = [f"Out of memory during training ({type(error).__name__}). Measured {what}: {peak / GIB:.2f} GiB."]
    if preset is not None and preset.estimate is not None:
        parts.append(f"Estimate under memory_preset={preset.tier}: {preset.estimate.total_gib:.2f} GiB.")
        smaller = next_smaller_tier(preset.tier)
        parts.append(f"Try memory_preset={smaller}" if smaller else "Try")
        parts[-1] += (
            f" or lower per_device_train_batch_size (now {args.per_device_train_batch_size}) / max_length "
            f"(now {args.max_length}) and raise gradient_accumulation_steps."
        )
    else:
        parts.append(
            f"Lower per_device_train_batch_size (now {args.per_device_train_batch_size}) or max_length (now "
            f"{args.max_length}), turn on gradient_checkpointing, or set memory_preset: auto."
        )
    if not getattr(args, "auto_find_batch_size", False):
        parts.append("With memory_preset: auto and auto_find_batch_size: true the run retries at half the batch.")
    return " ".join(parts)


def handle_out_of_memory(args: Any, preset: PresetResult | None, error: BaseException, batch_size: int) -> int | None:
    """What to do about an exception raised by a training step under a memory preset.

    Returns the per-device batch size to retry with, or `None` to let the original error through; raises
    [`PresetOutOfMemoryError`] when the run stops with an explanation.

    - `memory_preset: auto` with `auto_find_batch_size`: half the batch, twice the accumulation (so the effective
      batch stays; `args.gradient_accumulation_steps` is doubled here), and transformers' batch-size finder restarts
      the loop at that size.
    - `auto_find_batch_size` under a named tier: transformers' own retry (90% of the batch) proceeds unchanged.
    - no preset (`memory_preset: none`), or not an out-of-memory error: the original error, as in stock TRL.
    - otherwise: [`PresetOutOfMemoryError`] naming the measured peak, the estimate and the next smaller preset.
    """
    if preset is None or not is_out_of_memory(error):
        return None
    if args.auto_find_batch_size:
        if preset.requested is Preset.AUTO and batch_size > 1:
            half = batch_size // 2
            args.gradient_accumulation_steps *= 2
            if args.process_index == 0:
                from rich.console import Console

                Console(stderr=True).print(
                    f"[yellow]trl-smol: out of memory at per-device batch {batch_size}; retrying with batch {half} "
                    f"and gradient_accumulation_steps {args.gradient_accumulation_steps}[/yellow]"
                )
            return half
        if preset.requested is not Preset.AUTO:
            return None
    raise PresetOutOfMemoryError(out_of_memory_message(args, error, preset)) from error
