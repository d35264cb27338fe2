"""The memory tiers: what each preset sets, and which tier `auto` picks for this machine.

```python
from trl_smol.memory.tiers import TIERS, choose_tier
from trl_smol.memory.hardware import detect_hardware

TIERS["16gb"].method                          # "lora"
choose_tier(detect_hardware())                # "24gb" on a 24 GB GPU
```

The tier values come from the estimator (`trl_smol.memory.estimate`) for SmolLM3-3B: each GPU tier leaves more than
10% headroom on its own device size by the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from .hardware import GIB, HardwareInfo


class UnknownPresetError(ValueError):
    """A `memory_preset` value that is not a tier name, `auto` or `none`."""


class MemoryBudgetError(RuntimeError):
    """Explicit settings make the estimate exceed the device memory under a preset."""


@dataclass(frozen=True)
class MemoryTier:
    """One preset: the settings it applies and the memory it is made for (`gib` of device memory, 0 for host RAM)."""

    name: str
    gib: float
    method: str  # "qlora", "lora" or "full"
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    gradient_checkpointing: bool
    optim: str
    lora_r: int | None = None
    master_weights_fp32: bool = False  # full fine-tuning with float32 weights under bf16 autocast
    accelerator: str = "cuda"

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def capacity(self) -> int:
        return int(self.gib * GIB)


TIERS: dict[str, MemoryTier] = {
    tier.name: tier
    for tier in (
        # CPU: float32 (no bf16 autocast in TrainingArguments without `use_cpu`), LoRA, small micro-batches.
        MemoryTier("cpu", 0, "lora", 2, 8, 1024, True, "adamw_torch_fused", lora_r=16, accelerator="cpu"),
        MemoryTier("8gb", 8, "qlora", 1, 16, 2048, True, "paged_adamw_8bit", lora_r=16),
        MemoryTier("12gb", 12, "qlora", 4, 4, 2048, True, "paged_adamw_8bit", lora_r=32),
        MemoryTier("16gb", 16, "lora", 2, 8, 2048, True, "adamw_torch_fused", lora_r=16),
        MemoryTier("24gb", 24, "lora", 4, 4, 4096, True, "adamw_torch_fused", lora_r=32),
        # 40 GB cannot hold float32 master weights with Adam (16 B/param = 49 GB for 3B): bf16 weights, 8-bit Adam.
        MemoryTier("40gb", 40, "full", 2, 8, 4096, True, "adamw_8bit"),
        MemoryTier("80gb", 80, "full", 2, 8, 4096, True, "adamw_torch_fused", master_weights_fp32=True),
    )
}


class Preset(str, Enum):
    """The values of `memory_preset`: `none` (stock TRL), `auto` (from the hardware) or a tier's name."""

    NONE = "none"
    AUTO = "auto"
    CPU = "cpu"
    GB8 = "8gb"
    GB12 = "12gb"
    GB16 = "16gb"
    GB24 = "24gb"
    GB40 = "40gb"
    GB80 = "80gb"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PRESET_NAMES = tuple(preset.value for preset in Preset)
GPU_TIERS = tuple(name for name, tier in TIERS.items() if tier.accelerator == "cuda")


def next_smaller_tier(name: str) -> str | None:
    """The GPU tier below `name`, or None for the smallest (and for `cpu`)."""
    if name not in GPU_TIERS:
        return None
    index = GPU_TIERS.index(name)
    return GPU_TIERS[index - 1] if index > 0 else None


def choose_tier(hardware: HardwareInfo) -> str:
    """The tier `auto` picks: `cpu` without accelerator, else the largest tier the smallest device holds.

    Devices report a little less than their nominal size (a 16 GB T4 shows 14.6 GiB), so a tier matches a device with
    at least 90% of its nominal memory; the fit check then uses the device's real size.
    """
    if hardware.accelerator == "cpu" or not hardware.devices:
        return "cpu"
    memory = hardware.device_memory
    fitting = [name for name in GPU_TIERS if TIERS[name].capacity * 0.9 <= memory]
    return fitting[-1] if fitting else GPU_TIERS[0]


def requested_preset(value: Any) -> Preset:
    """`memory_preset` as a [`Preset`]; an unknown name raises [`UnknownPresetError`]."""
    try:
        return Preset(str(getattr(value, "value", value)).lower())
    except ValueError:
        raise UnknownPresetError(
            f"Unknown memory_preset `{value}`. Valid names: {', '.join(PRESET_NAMES)} (`auto` picks from the "
            "hardware, `none` leaves every setting as the recipe says)."
        ) from None


def resolve_tier(name: Any, hardware: HardwareInfo) -> str:
    """The tier a requested preset plans with: `auto` picks from the hardware."""
    preset = requested_preset(name)
    if preset is Preset.AUTO:
        return choose_tier(hardware)
    if preset is Preset.NONE:
        raise UnknownPresetError("memory_preset `none` has no tier: there is nothing to plan.")
    return preset.value


def with_tier(tier: MemoryTier, **changes: Any) -> MemoryTier:
    """A copy of a tier with some values changed, e.g. to plan a custom preset."""
    return replace(tier, **changes)
