"""Memory: the hardware, the estimate, the presets (tiers and planner), measurement and out-of-memory handling.

```python
from trl_smol.memory import detect_hardware, estimate_memory, plan_memory_preset

hardware = detect_hardware()
estimate = estimate_memory("HuggingFaceTB/SmolLM3-3B-Base", method="qlora", max_length=4096)
plan = plan_memory_preset("auto", args, model_name="HuggingFaceTB/SmolLM3-3B-Base", hardware=hardware)
```
"""

from .callback import MemoryMonitorCallback
from .estimate import METHODS, MemoryEstimate, breakdown_table, estimate_memory
from .hardware import GIB, HardwareInfo, detect_hardware
from .oom import PresetOutOfMemoryError, handle_out_of_memory, is_out_of_memory, out_of_memory_message
from .planner import apply_memory_preset, plan_memory_preset
from .preset_result import PresetResult, PresetRow
from .run_settings import estimate_for_run, lora_config, qlora_quantization_config
from .shapes import KNOWN_MODELS, PROJECTIONS, ModelShape, ModelShapeError, model_shape
from .tiers import (
    PRESET_NAMES,
    TIERS,
    MemoryBudgetError,
    MemoryTier,
    UnknownPresetError,
    choose_tier,
    next_smaller_tier,
)

__all__ = [
    "GIB",
    "KNOWN_MODELS",
    "METHODS",
    "PRESET_NAMES",
    "PROJECTIONS",
    "TIERS",
    "HardwareInfo",
    "MemoryBudgetError",
    "MemoryEstimate",
    "MemoryMonitorCallback",
    "MemoryTier",
    "ModelShape",
    "ModelShapeError",
    "PresetOutOfMemoryError",
    "PresetResult",
    "PresetRow",
    "UnknownPresetError",
    "apply_memory_preset",
    "breakdown_table",
    "choose_tier",
    "detect_hardware",
    "estimate_for_run",
    "estimate_memory",
    "handle_out_of_memory",
    "is_out_of_memory",
    "lora_config",
    "model_shape",
    "next_smaller_tier",
    "out_of_memory_message",
    "plan_memory_preset",
    "qlora_quantization_config",
]
