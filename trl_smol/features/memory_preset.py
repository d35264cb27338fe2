"""Memory presets (`memory_preset`, `memory_preset_force`): fit the run to the machine's memory ([memory.md]).

```yaml
memory_preset: auto    # or cpu, 8gb, 12gb, 16gb, 24gb, 40gb, 80gb; `none` (default) changes nothing
```

The planner is `trl_smol.memory.planner`: it sets the method, the batch split, checkpointing, the optimizer, the
precision and `max_length` where the user left them unset. The other features' levers (padding-free batches,
labelled-only loss positions, CPU threads) read the planned preset from the run context and add their own rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..memory import PresetResult
from ..memory.planner import plan_requested_preset
from ..memory.tiers import Preset, requested_preset
from .base import Decision, Feature, RunContext, Source


@dataclass
class MemoryPresetArguments:
    """
    memory_preset (`str`, *optional*, defaults to `"none"`):
        Memory preset: `"none"` (stock TRL behaviour), `"auto"` (chosen from the detected hardware), or a tier name:
        `"cpu"`, `"8gb"`, `"12gb"`, `"16gb"`, `"24gb"`, `"40gb"`, `"80gb"`. A preset only changes settings the recipe
        and command line left unset.
    memory_preset_force (`bool`, *optional*, defaults to `False`):
        Start even when explicit settings make the estimate exceed the device memory under a preset.
    """

    memory_preset: str = field(
        default=Preset.NONE.value,
        metadata={
            "help": "Memory preset: 'none' (stock TRL), 'auto' (from the detected hardware) or one of cpu, 8gb, 12gb, "
            "16gb, 24gb, 40gb, 80gb. Only settings the recipe and command line left unset are changed."
        },
    )
    memory_preset_force: bool = field(
        default=False,
        metadata={"help": "Start even if explicit settings make the estimate exceed the device under a preset."},
    )


class MemoryPreset(Feature):
    name = "memory_preset"
    banner_key = "memory_preset"

    def check_arguments(self, args: Any) -> None:
        requested_preset(args.memory_preset)  # UnknownPresetError: the name, and the valid ones

    def plan(self, context: RunContext) -> PresetResult | None:
        """The requested preset planned for this run, or None under `memory_preset: none`."""
        if requested_preset(context.value("memory_preset", Preset.NONE)) is Preset.NONE:
            return None
        return plan_requested_preset(
            context.args,
            model_name=context.model if context.model is not None else context.model_name,
            peft_config=context.peft_config,
            quantization_config=context.quantization_config,
            hardware=context.hardware,
            explicit=context.explicit,
            sharding=context.sharding,
        )

    def decide(self, context: RunContext) -> Decision:
        if context.preset is None:
            return Decision(self.name, Source.DEFAULT, None)
        return Decision(self.name, Source.USER, context.preset.tier, f"memory_preset={context.preset.requested}")

    def describe(self, decision: Decision) -> str | None:
        return decision.value if decision.on else None
