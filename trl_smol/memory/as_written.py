"""The run as written and as a preset leaves it: its estimate against the machine's memory, and its time.

`trl-smol doctor` shows these for the settings the run applies: without a memory preset, the recipe's own (the
verdict is [`as_written_verdict`]); under a preset, the preset's changes over them.

```python
estimated_time(None, "lora", args, "HuggingFaceTB/SmolLM3-3B-Base", described_hardware("h100-80gb"))
# "Estimated time: 3.1 s per optimizer step (2 x 8 rows of up to 4096 tokens per process), about 52 min for ..."
```
"""

from __future__ import annotations

import copy
from typing import Any

from .hardware import GIB, HardwareInfo
from .planner import _tier_device
from .preset_result import HEADROOM
from .run_settings import get_setting, set_setting
from .shapes import ModelShapeError, model_shape
from .speed import step_time_model
from .tiers import TIERS


def memory_budget(hardware: HardwareInfo) -> int:
    """The memory one training process has: a device's, or the host RAM available on a machine without one."""
    if hardware.devices:
        return hardware.device_memory
    return hardware.host_ram_available or hardware.host_ram


def as_written_verdict(total: int, budget: int) -> str:
    fraction = total / budget if budget else float("inf")
    if fraction > 1:
        return (
            f"does not fit ({fraction:.0%} of {budget / GIB:.1f} GiB): lower max_length or the batch size, turn on "
            "gradient_checkpointing, or set `memory_preset: auto`"
        )
    headroom = 1 - fraction
    tight = "fits, tight" if headroom < HEADROOM else "fits with"
    return f"{tight}{':' if headroom < HEADROOM else ''} {headroom:.0%} headroom of {budget / GIB:.1f} GiB"


def estimated_time(preset: Any, method: str, training_args: Any, model: Any, hardware: HardwareInfo) -> str | None:
    """The step time and the run's time by the step-time model (`trl_smol.memory.speed`), for the settings the run
    applies; None when the model's shape cannot be read."""
    try:
        shape = model_shape(model)
    except ModelShapeError:
        return None
    applied = copy.copy(training_args)
    for setting, value in (preset.changes if preset is not None else {}).items():
        set_setting(applied, setting, value)
    machine = hardware
    if preset is not None and TIERS[preset.tier].accelerator != hardware.accelerator:
        machine = _tier_device(TIERS[preset.tier])  # a plan for another machine's tier
    speed = step_time_model(machine, shape, method)
    micro, accumulation = applied.per_device_train_batch_size, applied.gradient_accumulation_steps
    tokens = applied.max_length or 1024
    seconds = speed.seconds(
        micro=micro,
        accumulation=accumulation,
        tokens_per_row=tokens,
        checkpointing=bool(get_setting(applied, "gradient_checkpointing")),
    )
    steps = applied.max_steps if isinstance(applied.max_steps, int) and applied.max_steps > 0 else None
    total = f", {_duration(seconds * steps)} for {steps} steps" if steps else ""
    return (
        f"Estimated time: {seconds:.1f} s per optimizer step ({micro} x {accumulation} rows of up to {tokens} "
        f"tokens per process){total}; step-time model, {speed.calibration}, rows counted at max_length: an upper "
        "bound for shorter rows."
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"about {seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
