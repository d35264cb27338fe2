"""The hardware a recipe needs, checked before anything loads: `trl sft` stops, `trl-smol doctor` says "does not run
here", with the same line.

A recipe needs a CUDA GPU, on a machine without an accelerator, when it trains in bf16 or fp16 (where transformers
would stop, or suggest `use_cpu`, which turns a 3B GPU recipe into a days-long CPU run), loads 4-bit or 8-bit weights
(bitsandbytes), or its memory estimate, without a memory preset, is more than the machine's RAM. `use_cpu: true` says
that a CPU is meant: then only the estimate and a working 4-bit backend count. A 4-bit or 8-bit recipe also needs a
bitsandbytes that quantizes on this device (a tiny NF4 quantisation is tried, as loading the model would).

```python
from trl_smol.memory.requirements import hardware_problem

problem = hardware_problem(values, detect_hardware(), recipe="recipes/smollm3_lora.yaml")
# "recipes/smollm3_lora.yaml needs a CUDA GPU (`bf16: true` ...), and this machine has none: ..."
```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .hardware import GIB, HardwareInfo, bitsandbytes_4bit_error
from .shapes import KNOWN_MODELS, ModelShapeError, model_shape

DEMO_RECIPE = "recipes/smollm3_demo.yaml"
SIZING_MACHINE = "h100-80gb"  # a described machine (memory/devices.py) to size a GPU recipe on


class RecipeNeedsHardwareError(RuntimeError):
    """A recipe that cannot run on this machine (the message says what it needs and what to run instead)."""


def hardware_problem(
    values: Any,
    hardware: HardwareInfo,
    *,
    recipe: str | None = None,
    four_bit_error: Callable[[], str | None] = bitsandbytes_4bit_error,
) -> str | None:
    """Why the run of `values` (the recipe's values, as the recipe parser reads them) cannot start on `hardware`, as
    one line, or None. `four_bit_error` tries bitsandbytes here (a described machine answers from its `bnb_4bit`)."""
    name = f"recipe {recipe}" if recipe else "the run"
    use_cpu = bool(getattr(values, "use_cpu", False))
    quantized = _quantization(values)
    if hardware.accelerator == "cpu":
        reason = _gpu_reason(values, quantized, use_cpu) or _memory_reason(values, hardware)
        if reason:
            sizing = f"trl-smol doctor --config {recipe or 'RECIPE'} --hardware {SIZING_MACHINE}"
            return (
                f"{name} needs a CUDA GPU ({reason}), and this machine has none: on a CPU, train the demo recipe "
                f"(`trl sft --config {DEMO_RECIPE}`); to size this recipe for a GPU, run `{sizing}`."
            )
    if quantized:
        error = four_bit_error()
        if error:
            return (
                f"{name} loads {quantized} weights (`load_in_{quantized[0]}bit: true`), but bitsandbytes cannot "
                f"quantize on this machine ({error}). Install a bitsandbytes build with a backend for this device, "
                "or remove the `load_in_*` key and set `memory_preset: auto`, which trains LoRA in 16-bit here."
            )
    return None


def _quantization(values: Any) -> str | None:
    if getattr(values, "load_in_4bit", False):
        return "4-bit"
    if getattr(values, "load_in_8bit", False):
        return "8-bit"
    return None


def _gpu_reason(values: Any, quantized: str | None, use_cpu: bool) -> str | None:
    if use_cpu:
        return None  # the recipe asks for the CPU: its precision is transformers' business there
    if getattr(values, "bf16", None):
        return "bf16 mixed precision, `bf16: true`"
    if getattr(values, "fp16", False):
        return "fp16 mixed precision, `fp16: true`"
    if quantized:
        return f"{quantized} weights, `load_in_{quantized[0]}bit: true`"
    return None


def _memory_reason(values: Any, hardware: HardwareInfo) -> str | None:
    """The estimate of the run as written, when it exceeds this machine's RAM. Only under no memory preset (a preset
    plans to the machine and stops on its own) and for a model whose shape is known without the Hub."""
    from .estimate import estimate_memory

    preset = str(getattr(getattr(values, "memory_preset", None), "value", getattr(values, "memory_preset", None)))
    model = getattr(values, "model_name_or_path", None)
    if preset.lower() not in ("none", "") or not isinstance(model, str):
        return None
    if model not in KNOWN_MODELS and not os.path.isdir(model):
        return None  # reading a hub config here could wait on the network: the run's own loading says it
    try:
        shape = model_shape(model)
    except ModelShapeError:
        return None
    lora, optim = bool(getattr(values, "use_peft", False)), getattr(values, "optim", None)
    estimate = estimate_memory(
        shape,
        method=("qlora" if getattr(values, "load_in_4bit", False) else "lora") if lora else "full",
        max_length=getattr(values, "max_length", 1024) or 1024,
        per_device_train_batch_size=getattr(values, "per_device_train_batch_size", 8) or 1,
        gradient_checkpointing=bool(getattr(values, "gradient_checkpointing", False)),
        optim=str(getattr(optim, "value", optim)) if optim else "adamw_torch_fused",
        lora_r=getattr(values, "lora_r", 16) or 16,
        dtype="float32",  # no bf16 on a machine without an accelerator (features/precision.py)
        weights_dtype=_weights_dtype(values),
        device="cpu",
        weights_resident=True,
    )
    budget = hardware.host_ram_available or hardware.host_ram
    if not budget or estimate.total_bytes <= budget:
        return None
    return (
        f"`{model}` trained as written: about {estimate.total_gib:.0f} GiB estimated, more than the "
        f"{budget / GIB:.0f} GiB of RAM available"
    )


def _weights_dtype(values: Any) -> str:
    dtype = getattr(values, "dtype", None) or "float32"
    dtype = str(dtype).replace("torch.", "")
    return "bfloat16" if dtype == "auto" else dtype
