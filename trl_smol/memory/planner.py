"""Memory presets: settings that fit a SmolLM3 SFT run to the memory of the machine it runs on.

```yaml
# recipe.yaml, run with `trl sft --config recipe.yaml`
model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base
memory_preset: auto          # or cpu, 8gb, 12gb, 16gb, 24gb, 40gb, 80gb; `none` (default) changes nothing
learning_rate: 2.0e-4        # explicit settings always win over the preset
```

```python
from trl_smol.memory import detect_hardware, plan_memory_preset

plan = plan_memory_preset("16gb", args, model_name="HuggingFaceTB/SmolLM3-3B", hardware=detect_hardware())
for row in plan.rows:  # every change and every conflict, with the reason
    print(row.setting, row.preset_value, row.value, row.status, row.reason)
```

A tier sets the method (QLoRA / LoRA / full fine-tuning), per-device batch and gradient accumulation (keeping the
recipe's effective batch size), gradient checkpointing, the optimizer, the precision and load dtype, `max_length`
when the recipe left it unset, and the attention kernel where FlashAttention is installed. The plugin's levers
(padding-free batches, labelled-only loss positions, CPU threads: `trl_smol.features`) add their own rows. It changes
only settings that the recipe and the command line did not set (`explicit`, by default
[`trl_smol.settings.explicit_settings`]); a
LoRA or 4-bit config is created only when the caller passed none. [`apply_memory_preset`] writes the changes, prints
every change and conflict in one table and stops when explicit settings make the estimate exceed the device, unless
`memory_preset_force` is set.

The tier values come from the estimator (`trl_smol.memory.estimate`) for SmolLM3-3B: the 8 GB and 16 GB tiers leave
more than 10% headroom by the estimate.
"""

from __future__ import annotations

from typing import Any

from ..settings import explicit_settings
from .batching import choose_batch
from .hardware import GIB, HardwareInfo, detect_hardware
from .preset_result import PresetResult, PresetRow, RowStatus
from .run_settings import (
    copy_with,
    dtype_name,
    estimate_for_run,
    get_setting,
    is_explicit,
    lora_config,
    method_of,
    qlora_quantization_config,
    set_setting,
)
from .shapes import ModelShape, ModelShapeError, model_shape
from .sharding import Sharding
from .speed import step_time_model
from .tiers import TIERS, MemoryBudgetError, Preset, requested_preset, resolve_tier


def plan_memory_preset(
    name: str,
    args: Any,
    *,
    model_name: Any = None,
    peft_config: Any = None,
    quantization_config: Any = None,
    hardware: HardwareInfo | None = None,
    explicit: frozenset[str] | None = None,
    sharding: Sharding | None = None,
) -> PresetResult:
    """Decide what preset `name` changes, on a copy of `args`; nothing on `args` is modified.

    `model_name` is a hub id, a local path, a config, a [`ModelShape`] or a model object. The returned
    `PresetResult.changes` maps field names to the new values; [`apply_memory_preset`] writes them.
    """
    import copy

    hardware = hardware or detect_hardware()
    tier_name = resolve_tier(name, hardware)
    tier = TIERS[tier_name]
    explicit = explicit_settings(args) if explicit is None else explicit
    planned = copy.copy(args)  # shallow: model_init_kwargs is replaced, never mutated
    rows: list[PresetRow] = []
    changes: dict[str, Any] = {}

    def propose(setting: str, value: Any, reason: str) -> None:
        current = get_setting(planned, setting)
        if is_explicit(setting, explicit):
            if current != value:
                rows.append(
                    PresetRow(setting, value, current, RowStatus.KEPT_EXPLICIT, "set in the recipe or command line")
                )
            return
        if current != value:
            set_setting(planned, setting, value)
            changes[setting] = value
            rows.append(PresetRow(setting, value, value, RowStatus.CHANGED, reason))

    loaded_model = (
        model_name is not None and not isinstance(model_name, (str, ModelShape)) and hasattr(model_name, "parameters")
    )

    # Method: what the caller passed wins; QLoRA needs bitsandbytes 4-bit and a model that is still to be loaded.
    method = method_of(peft_config, quantization_config, args)
    method_explicit = method is not None or getattr(model_name, "is_loaded_in_4bit", False)
    if method is None:
        method = tier.method
        if method == "qlora" and not hardware.bnb_4bit and tier.accelerator == hardware.accelerator:
            method = "lora"
            rows.append(
                PresetRow("method", "qlora", "lora", RowStatus.UNAVAILABLE, "bitsandbytes 4-bit is not usable here")
            )
        elif method == "qlora" and loaded_model:
            method = "lora"
            rows.append(PresetRow("method", "qlora", "lora", RowStatus.UNAVAILABLE, "the model is already loaded"))
        else:
            rows.append(PresetRow("method", tier.method, method, RowStatus.CHANGED, f"{tier.name} tier"))
    elif method != tier.method:
        rows.append(
            PresetRow("method", tier.method, method, RowStatus.KEPT_EXPLICIT, "peft/quantization config passed")
        )

    # Precision: bf16 autocast where supported, fp16 otherwise; float32 on CPU.
    if tier.accelerator == "cpu":
        compute = "float32"
        propose("bf16", False, "CPU: float32 training")
        propose("fp16", False, "CPU: float32 training")
    else:
        compute = "bfloat16" if hardware.bf16 or hardware.accelerator == "cpu" else "float16"
        propose("bf16", compute == "bfloat16", "bf16 supported" if compute == "bfloat16" else "no bf16 here")
        propose("fp16", compute == "float16", "no bf16 here: fp16 mixed precision" if compute == "float16" else "")
        compute = dtype_name(planned)

    # Load dtype: half precision weights except for float32 master weights (80gb) and fp16 full fine-tuning, which
    # needs float32 weights for the gradient scaler.
    if not loaded_model:
        init_kwargs = dict(getattr(planned, "model_init_kwargs", None) or {})
        if compute == "float32" or (method == "full" and (tier.master_weights_fp32 or compute == "float16")):
            load_dtype = "float32"
        else:
            load_dtype = compute
        # TRL's `sft` script fills `model_init_kwargs.dtype` with ModelConfig's default: only a dtype the user set
        # (the recipe's `dtype`, or their own `model_init_kwargs`) is kept. Unset, TRL loads float32.
        current = init_kwargs.get("dtype") or init_kwargs.get("torch_dtype")
        if current is None or not explicit & {"dtype", "torch_dtype", "model_init_kwargs"}:
            if (current or "float32") != load_dtype:
                init_kwargs.pop("torch_dtype", None)
                init_kwargs["dtype"] = load_dtype
                reason = "half-precision weights" + (" (4-bit projections)" if method == "qlora" else "")
                rows.append(PresetRow("model_init_kwargs.dtype", load_dtype, load_dtype, RowStatus.CHANGED, reason))
        elif current != load_dtype:
            rows.append(
                PresetRow("model_init_kwargs.dtype", load_dtype, current, RowStatus.KEPT_EXPLICIT, "set by the user")
            )
        if tier.accelerator == "cuda":  # kernels that load here without a download (memory/kernels.py)
            from .kernels import choose_attention, choose_hub_kernels, model_type_of

            attention, why = choose_attention(hardware, model_type_of(model_name))
            # `trl sft` passes `attn_implementation: None` for a recipe without it; sdpa is transformers' default.
            if init_kwargs.get("attn_implementation") is None and attention.startswith("flash_attention"):
                init_kwargs["attn_implementation"] = attention
                rows.append(PresetRow("model_init_kwargs.attn_implementation", attention, attention,
                                      RowStatus.CHANGED, why))  # fmt: skip
            hub_kernels = choose_hub_kernels(hardware)
            if hub_kernels is not None and init_kwargs.get("use_kernels") is None:
                init_kwargs["use_kernels"] = hub_kernels[0]
                rows.append(PresetRow("model_init_kwargs.use_kernels", hub_kernels[0], hub_kernels[0],
                                      RowStatus.CHANGED, hub_kernels[1]))  # fmt: skip
        if init_kwargs != (getattr(planned, "model_init_kwargs", None) or {}):
            planned.model_init_kwargs = init_kwargs
            changes["model_init_kwargs"] = init_kwargs

    optim = tier.optim
    if "8bit" in optim and not hardware.bnb_4bit and tier.accelerator == hardware.accelerator:
        optim = "adamw_torch_fused"
    propose("optim", optim, "8-bit states: 2 B/param" if "8bit" in optim else "fused AdamW: no update copy")
    propose("max_length", tier.max_length, "sequence length this tier is sized for")

    # PEFT / 4-bit configs, only when the caller passed none.
    new_peft, new_quant = peft_config, quantization_config
    if not method_explicit and method in ("lora", "qlora"):
        new_peft = lora_config(tier.lora_r or 16)
        rows.append(PresetRow("peft_config", f"LoRA r={new_peft.r}", f"LoRA r={new_peft.r}", RowStatus.CHANGED,
                              "all 7 projections, alpha 2r, dropout 0"))  # fmt: skip
        if method == "qlora":
            # Under ZeRO-3 / FSDP full sharding the 4-bit weights are stored in the compute dtype so that they can be
            # flattened and sharded with the rest (PEFT's guide to QLoRA with DeepSpeed / FSDP).
            sharded = sharding is not None and sharding.stage == 3
            new_quant = qlora_quantization_config(compute if compute != "float32" else "bfloat16", sharded=sharded)
            rows.append(PresetRow("quantization_config", "NF4 + double quant", "NF4 + double quant", RowStatus.CHANGED,
                                  f"4-bit weights, {compute} compute"))  # fmt: skip

    # Budget: host RAM on CPU; on a GPU under `auto` the whole device (the tier only names the plan), under a named
    # tier that tier's size (at most the device's): a smaller tier on a larger device is asked for to leave room.
    device = "cpu" if tier.accelerator == "cpu" else hardware.accelerator if hardware.devices else "cuda"
    if tier.accelerator == "cpu":
        budget = hardware.host_ram_available or hardware.host_ram
    elif hardware.accelerator != "cpu" and hardware.devices:
        whole = requested_preset(name) is Preset.AUTO
        budget = hardware.device_memory if whole else min(tier.capacity, hardware.device_memory)
    else:
        budget = tier.capacity
    shape = _shape_or_none(model_name, rows)
    shard = sharding.estimate_kwargs() if sharding is not None else {}
    speed = step_time_model(
        hardware if tier.accelerator == hardware.accelerator else _tier_device(tier), shape, method
    )
    tokens_per_row = int(planned.max_length or 1024)

    # Batch: the run's rows per optimizer step (the recipe's, or TRL's default) split into the fastest plan that fits
    # (memory/batching.py, memory/speed.py); per process after ZeRO / FSDP sharding.
    def peak(micro: int, checkpointing: bool) -> int:
        if shape is None:  # no estimate: the tier's own values stand for what fits
            return 0 if checkpointing and micro <= tier.per_device_train_batch_size else 2 * budget
        trial = copy_with(copy_with(planned, "per_device_train_batch_size", micro), "gradient_checkpointing",
                          checkpointing)  # fmt: skip
        return estimate_for_run(trial, model_name, peft_config=new_peft, quantization_config=new_quant,
                                device=device, shape=shape, **shard).total_bytes  # fmt: skip

    def seconds(micro: int, accumulation: int, checkpointing: bool) -> float:
        return speed.seconds(
            micro=micro, accumulation=accumulation, tokens_per_row=tokens_per_row, checkpointing=checkpointing
        )

    split_fixed = is_explicit("per_device_train_batch_size", explicit) or is_explicit(
        "gradient_accumulation_steps", explicit
    )
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps
    choice = choose_batch(
        effective,
        peak=peak,
        budget=budget,
        seconds=seconds,
        micro_batch=args.per_device_train_batch_size if split_fixed else None,
        gradient_checkpointing=args.gradient_checkpointing
        if is_explicit("gradient_checkpointing", explicit)
        else None,
    )
    where = "host RAM" if tier.accelerator == "cpu" else f"{budget / GIB:.0f} GiB"
    where += f" per process under {sharding.label}" if sharding is not None and sharding.stage else ""
    propose("per_device_train_batch_size", choice.micro_batch, f"the fastest plan that fits {where}")
    propose("gradient_accumulation_steps", choice.accumulation, f"keeps {effective} rows per optimizer step")
    propose(
        "gradient_checkpointing",
        choice.gradient_checkpointing,
        "needed to fit" if choice.gradient_checkpointing else "fits without recomputing activations: faster",
    )
    estimate = None
    culprits: list[str] = []
    if shape is not None:
        estimate = estimate_for_run(
            planned, model_name, peft_config=new_peft, quantization_config=new_quant, device=device, shape=shape,
            **shard,
        )  # fmt: skip
        if estimate.total_bytes > budget:
            culprits = _find_culprits(planned, tier, explicit, model_name, new_peft, new_quant, device, shape, budget)
            for row in rows:
                if row.setting in culprits and row.status is RowStatus.KEPT_EXPLICIT:
                    row.status = RowStatus.BREAKS_BUDGET
            for culprit in culprits:
                if not any(row.setting == culprit for row in rows):
                    rows.append(
                        PresetRow(culprit, "-", get_setting(planned, culprit), RowStatus.BREAKS_BUDGET, "explicit")
                    )
    return PresetResult(
        tier=tier_name,
        requested=requested_preset(name),
        hardware=hardware,
        method=method,
        rows=rows,
        changes=changes,
        peft_config=new_peft,
        quantization_config=new_quant,
        estimate=estimate,
        budget=budget,
        fits=estimate is None or estimate.total_bytes <= budget,
        culprits=culprits,
        batch=choice,
        speed=speed,
        sharding=sharding,
    )


def _tier_device(tier: Any) -> HardwareInfo:
    """The device a tier stands for, when planning that tier on a machine of another kind (`--preset 16gb` on a
    laptop): a GPU of the tier's size, ranked as an A100 by the step-time model."""
    from .hardware import DeviceInfo

    return HardwareInfo("cuda", devices=(DeviceInfo(f"{tier.name} GPU", tier.capacity, tier.capacity),))


def _shape_or_none(model: Any, rows: list[PresetRow]) -> ModelShape | None:
    if model is None or model == "":
        rows.append(PresetRow("estimate", "-", "-", RowStatus.UNAVAILABLE, "no model name: nothing to estimate"))
        return None
    return model_shape(model)  # raises ModelShapeError with what to do


def _find_culprits(planned, tier, explicit, model, peft, quant, device, shape, budget) -> list[str]:
    """Explicit settings which, set to the tier's value instead, bring the estimate under the budget."""
    tier_values = {
        "max_length": tier.max_length,
        "per_device_train_batch_size": tier.per_device_train_batch_size,
        "gradient_checkpointing": tier.gradient_checkpointing,
        "optim": tier.optim,
    }
    base = estimate_for_run(planned, model, peft_config=peft, quantization_config=quant, device=device, shape=shape)
    savings: dict[str, int] = {}
    for setting, value in tier_values.items():
        if not is_explicit(setting, explicit) or get_setting(planned, setting) == value:
            continue
        trial = copy_with(planned, setting, value)
        trial_estimate = estimate_for_run(trial, model, peft_config=peft, quantization_config=quant, device=device,
                                          shape=shape)  # fmt: skip
        savings[setting] = base.total_bytes - trial_estimate.total_bytes
    if not savings:
        return []
    single = [setting for setting, saved in savings.items() if base.total_bytes - saved <= budget]
    if single:
        return single
    return [setting for setting, saved in sorted(savings.items(), key=lambda item: -item[1]) if saved > 0]


def plan_requested_preset(
    args: Any,
    *,
    model_name: Any,
    peft_config: Any = None,
    quantization_config: Any = None,
    hardware: HardwareInfo | None = None,
    explicit: frozenset[str] | None = None,
    sharding: Sharding | None = None,
) -> PresetResult:
    """[`plan_memory_preset`] for `args.memory_preset`, refusing a GPU tier on a machine without one (unless
    `memory_preset_force`). Raises [`UnknownPresetError`] for an unknown name; nothing on `args` is modified."""
    name = requested_preset(args.memory_preset)
    if name is Preset.NONE:
        raise ValueError("memory_preset is `none`: there is nothing to plan.")
    hardware = hardware or detect_hardware()
    tier_name = resolve_tier(name, hardware)
    if TIERS[tier_name].accelerator == "cuda" and hardware.accelerator == "cpu" and not args.memory_preset_force:
        raise MemoryBudgetError(
            f"memory_preset={name} is a GPU tier, but no GPU was found. Use memory_preset=cpu or auto, or set "
            "memory_preset_force: true to apply it anyway."
        )
    try:
        return plan_memory_preset(
            name, args, model_name=model_name, peft_config=peft_config, quantization_config=quantization_config,
            hardware=hardware, explicit=explicit, sharding=sharding,
        )  # fmt: skip
    except ModelShapeError as error:
        raise ModelShapeError(f"memory_preset={name}: {error}") from error


def write_preset(args: Any, result: PresetResult) -> None:
    """Write the preset's changes into `args`, then stop when the estimate exceeds the budget and
    `memory_preset_force` is off ([`MemoryBudgetError`], naming the settings that break it)."""
    for setting, value in result.changes.items():
        set_setting(args, setting, value)
    if not result.fits and not getattr(args, "memory_preset_force", False):
        raise MemoryBudgetError(
            f"memory_preset={result.tier}: the estimate ({result.estimate.total_gib:.1f} GiB) exceeds the "
            f"{result.budget / GIB:.1f} GiB budget{result.suggestion()}. Set memory_preset_force: true to start "
            "anyway, or memory_preset: none to leave memory to the recipe."
        )


def apply_memory_preset(args: Any, *, print_table: bool | None = None, **planning: Any) -> PresetResult:
    """Plan `args.memory_preset` ([`plan_requested_preset`], same keywords), write it into `args` in place
    ([`write_preset`]) and return what was decided. The table of changes and conflicts is printed first (by default
    on the main process). `SmolSFTTrainer` does the same through its run plan."""
    result = plan_requested_preset(args, **planning)
    if print_table is None:
        print_table = getattr(args, "process_index", 0) == 0
    if print_table:
        from rich.console import Console

        Console().print(result.table())
    write_preset(args, result)
    return result
