"""Reading and writing the memory-relevant training arguments, and the estimate of a run as configured.

```python
from trl_smol.memory.run_settings import estimate_for_run

estimate = estimate_for_run(args, "HuggingFaceTB/SmolLM3-3B-Base", peft_config=lora)
```
"""

from __future__ import annotations

from typing import Any

from .estimate import MemoryEstimate, estimate_memory
from .shapes import PROJECTIONS, ModelShape, model_shape


def get_setting(args: Any, name: str) -> Any:
    value = getattr(args, name)
    return getattr(value, "value", value)  # OptimizerNames -> str


def set_setting(args: Any, name: str, value: Any) -> None:
    """Set a field after `TrainingArguments.__post_init__` has run, updating what it derived from the field."""
    if name == "optim":
        from transformers.training_args import OptimizerNames

        args.optim = OptimizerNames(value)
    elif name == "gradient_checkpointing":
        # transformers 5 reads `activation_checkpointing`; `gradient_checkpointing` is its mirrored old name.
        args.gradient_checkpointing = value
        if hasattr(args, "activation_checkpointing"):
            args.activation_checkpointing = value
    elif name in ("bf16", "fp16"):
        setattr(args, name, value)
        args.mixed_precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    else:
        setattr(args, name, value)


def is_explicit(name: str, explicit: frozenset[str]) -> bool:
    aliases = {"gradient_checkpointing": {"activation_checkpointing"}, "bf16": {"fp16"}, "fp16": {"bf16"}}
    return name in explicit or bool(aliases.get(name, set()) & explicit)


def method_of(peft_config: Any, quantization_config: Any, args: Any) -> str | None:
    init_kwargs = getattr(args, "model_init_kwargs", None) or {}
    quantization = quantization_config or init_kwargs.get("quantization_config")
    four_bit = bool(getattr(quantization, "load_in_4bit", False)) or (
        isinstance(quantization, dict) and quantization.get("load_in_4bit")
    )
    if peft_config is not None:
        return "qlora" if four_bit else "lora"
    return None


def dtype_name(args: Any) -> str:
    return "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"


def estimate_for_run(
    args: Any,
    model: Any,
    *,
    peft_config: Any = None,
    quantization_config: Any = None,
    device: str = "cuda",
    shape: ModelShape | None = None,
    shard_stage: int = 0,
    shard_processes: int = 1,
) -> MemoryEstimate:
    """The estimate for a run as configured: training arguments, model (name, path, config or object), PEFT/4-bit;
    per process under ZeRO / FSDP sharding with `shard_stage` / `shard_processes` (see `estimate_memory`)."""
    shape = shape or model_shape(model)
    method = method_of(peft_config, quantization_config, args) or "full"
    init_kwargs = dict(getattr(args, "model_init_kwargs", None) or {})
    loaded = model is not None and not isinstance(model, (str, ModelShape)) and hasattr(model, "parameters")
    if loaded:
        weights_dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        if getattr(model, "is_loaded_in_4bit", False):
            method = "qlora" if peft_config is not None or method != "full" else method
    else:
        weights_dtype = str(init_kwargs.get("dtype") or init_kwargs.get("torch_dtype") or "float32")
        weights_dtype = weights_dtype.replace("torch.", "")
        if weights_dtype == "auto":
            weights_dtype = "bfloat16"  # SmolLM3 checkpoints are stored in bf16
    compute = dtype_name(args)
    return estimate_memory(
        shape,
        method=method,
        max_length=args.max_length,
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_checkpointing=bool(args.gradient_checkpointing),
        optim=get_setting(args, "optim"),
        lora_r=getattr(peft_config, "r", 16) or 16,
        lora_target_modules=getattr(peft_config, "target_modules", None) or "all-linear",
        lora_dropout=float(getattr(peft_config, "lora_dropout", 0.0) or 0.0),
        dtype=compute,
        weights_dtype=weights_dtype,
        double_quant=bool(getattr(quantization_config, "bnb_4bit_use_double_quant", True)),
        packing=bool(getattr(args, "packing", False)),
        use_liger_kernel=bool(getattr(args, "use_liger_kernel", False)),
        device=device,
        weights_resident=True,
        shard_stage=shard_stage,
        shard_processes=shard_processes,
        attention=init_kwargs.get("attn_implementation"),
    )


def lora_config(r: int):
    """The presets' LoRA: all seven projections, alpha 2r, no dropout."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=list(PROJECTIONS), bias="none", task_type="CAUSAL_LM"
    )


def qlora_quantization_config(compute_dtype: str, sharded: bool = False):
    """The presets' QLoRA weights: NF4 with double quantisation, computing in `compute_dtype`; under ZeRO-3 / FSDP
    full sharding (`sharded`) stored in the compute dtype too (`bnb_4bit_quant_storage`), as PEFT's guide to QLoRA
    with DeepSpeed and FSDP sets it, so that the sharding engine can flatten them with the other parameters."""
    import torch
    from transformers import BitsAndBytesConfig

    storage = {"bnb_4bit_quant_storage": getattr(torch, compute_dtype)} if sharded else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
        **storage,
    )


def copy_with(args: Any, setting: str, value: Any) -> Any:
    import copy

    trial = copy.copy(args)
    set_setting(trial, setting, value)
    return trial
