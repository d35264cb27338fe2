"""Memory presets: settings that fit a SmolLM3 SFT run to the memory of the machine it runs on.

```yaml
# recipe.yaml, run with `trl sft --config recipe.yaml`
model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base
memory_preset: auto          # or cpu, 8gb, 12gb, 16gb, 24gb, 40gb, 80gb; `none` (default) changes nothing
learning_rate: 2.0e-4        # explicit settings always win over the preset
```

```python
from trl_smol.presets import TIERS, apply_memory_preset, detect_hardware, estimate_memory, plan_memory_preset

plan = plan_memory_preset("16gb", args, model_name="HuggingFaceTB/SmolLM3-3B", hardware=detect_hardware())
for row in plan.rows:  # every change and every conflict, with the reason
    print(row.setting, row.preset_value, row.value, row.status, row.reason)
```

A tier sets the method (QLoRA / LoRA / full fine-tuning), per-device batch and gradient accumulation (keeping the
recipe's effective batch size), gradient checkpointing, the optimizer, the precision and load dtype, `max_length`
when the recipe left it unset, and padding-free batches where FlashAttention is installed. It changes only settings
that the recipe and the command line did not set ([`trl_smol.config.explicit_fields`]); a LoRA or 4-bit config is
created only when the caller passed none. [`apply_memory_preset`] prints every change and conflict in one table and
stops when explicit settings make the estimate exceed the device, unless `memory_preset_force` is set.

The tier values come from the estimator (`trl_smol.memory_estimate`) for SmolLM3-3B: the 8 GB and 16 GB tiers leave
more than 10% headroom by the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .config import explicit_fields
from .hardware import GIB, HardwareInfo, detect_hardware
from .memory_estimate import (
    KNOWN_MODELS,
    PROJECTIONS,
    MemoryEstimate,
    ModelShape,
    ModelShapeError,
    estimate_memory,
    model_shape,
)

__all__ = [
    "PRESET_NAMES",
    "TIERS",
    "MemoryBudgetError",
    "MemoryTier",
    "PresetResult",
    "PresetRow",
    "UnknownPresetError",
    "apply_memory_preset",
    "choose_tier",
    "detect_hardware",
    "estimate_for_run",
    "estimate_memory",
    "next_smaller_tier",
    "plan_memory_preset",
]

# Attribute names on the training arguments where the chosen preset and its estimate are kept for the memory
# callback and the out-of-memory message (they are not dataclass fields, so they are never serialised).
RESULT_ATTR = "_trl_smol_memory_preset"

HEADROOM = 0.10  # verdict "fits" needs the estimate at or under 90% of the budget


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
PRESET_NAMES = ("none", "auto", *TIERS)
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


def resolve_tier(name: str, hardware: HardwareInfo) -> str:
    if name == "auto":
        return choose_tier(hardware)
    if name not in TIERS:
        raise UnknownPresetError(
            f"Unknown memory_preset `{name}`. Valid names: {', '.join(PRESET_NAMES)} (`auto` picks from the hardware, "
            "`none` leaves every setting as the recipe says)."
        )
    return name


@dataclass
class PresetRow:
    """One line of the start-up table: what the preset wanted for a setting and what the run uses."""

    setting: str
    preset_value: Any
    value: Any
    status: str  # "changed", "kept: explicit", "breaks the budget", "unavailable", "info"
    reason: str = ""


@dataclass
class PresetResult:
    """What a preset decided. `peft_config` / `quantization_config` are what the trainer should use."""

    tier: str
    requested: str
    hardware: HardwareInfo
    method: str
    rows: list[PresetRow]
    changes: dict[str, Any]
    peft_config: Any
    quantization_config: Any
    estimate: MemoryEstimate | None
    budget: int
    fits: bool
    culprits: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        return self.estimate.fraction_of(self.budget) if self.estimate else None

    @property
    def verdict(self) -> str:
        if self.estimate is None:
            return "unknown: the model's shape could not be read"
        fraction = self.fraction
        if fraction > 1:
            smaller = self.suggestion()
            return f"does not fit ({fraction:.0%} of {self.budget / GIB:.1f} GiB){smaller}"
        headroom = 1 - fraction
        if headroom < HEADROOM:
            return f"fits, tight: {headroom:.0%} headroom of {self.budget / GIB:.1f} GiB"
        return f"fits with {headroom:.0%} headroom of {self.budget / GIB:.1f} GiB"

    def suggestion(self) -> str:
        if self.culprits:
            return f": the explicit {', '.join(self.culprits)} break the budget; unset them or lower them"
        smaller = next_smaller_tier(self.tier)
        return f": try memory_preset={smaller}" if smaller else ": lower max_length or the batch size"

    def table(self, title: str | None = None):
        from rich.table import Table

        title = title or f"trl-smol memory preset `{self.tier}`" + (
            f" (auto on {self.hardware.name})" if self.requested == "auto" else ""
        )
        table = Table(title=title, caption=f"estimate: {self.verdict}")
        table.add_column("setting", no_wrap=True)
        table.add_column("preset", overflow="fold")
        table.add_column("used", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("why")
        styles = {"changed": "green", "kept: explicit": "yellow", "breaks the budget": "bold red"}
        for row in self.rows:
            style = styles.get(row.status, "")
            status = f"[{style}]{row.status}[/{style}]" if style else row.status
            table.add_row(row.setting, _show(row.preset_value), _show(row.value), status, row.reason)
        return table


def _show(value: Any) -> str:
    value = getattr(value, "value", value)
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


# --- helpers over the training arguments -------------------------------------------------------------------------
def _get(args: Any, name: str) -> Any:
    value = getattr(args, name)
    return getattr(value, "value", value)  # OptimizerNames -> str


def _set(args: Any, name: str, value: Any) -> None:
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


def _is_explicit(name: str, explicit: frozenset[str]) -> bool:
    aliases = {"gradient_checkpointing": {"activation_checkpointing"}, "bf16": {"fp16"}, "fp16": {"bf16"}}
    return name in explicit or bool(aliases.get(name, set()) & explicit)


def _method_of(peft_config: Any, quantization_config: Any, args: Any) -> str | None:
    init_kwargs = getattr(args, "model_init_kwargs", None) or {}
    quantization = quantization_config or init_kwargs.get("quantization_config")
    four_bit = bool(getattr(quantization, "load_in_4bit", False)) or (
        isinstance(quantization, dict) and quantization.get("load_in_4bit")
    )
    if peft_config is not None:
        return "qlora" if four_bit else "lora"
    return None


def _dtype_name(args: Any) -> str:
    return "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"


def estimate_for_run(
    args: Any,
    model: Any,
    *,
    peft_config: Any = None,
    quantization_config: Any = None,
    device: str = "cuda",
    shape: ModelShape | None = None,
) -> MemoryEstimate:
    """The estimate for a run as configured: training arguments, model (name, path, config or object), PEFT/4-bit."""
    shape = shape or model_shape(model)
    method = _method_of(peft_config, quantization_config, args) or "full"
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
    compute = _dtype_name(args)
    return estimate_memory(
        shape,
        method=method,
        max_length=args.max_length,
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_checkpointing=bool(args.gradient_checkpointing),
        optim=_get(args, "optim"),
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
    )


def lora_config(r: int):
    """The presets' LoRA: all seven projections, alpha 2r, no dropout."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=list(PROJECTIONS), bias="none", task_type="CAUSAL_LM"
    )


def qlora_quantization_config(compute_dtype: str):
    """The presets' QLoRA weights: NF4 with double quantisation, computing in `compute_dtype`."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


# --- planning: a pure function of the arguments, the model shape and the hardware ---------------------------------
def plan_memory_preset(
    name: str,
    args: Any,
    *,
    model_name: Any = None,
    peft_config: Any = None,
    quantization_config: Any = None,
    hardware: HardwareInfo | None = None,
    explicit: frozenset[str] | None = None,
) -> PresetResult:
    """Decide what preset `name` changes, on a copy of `args`; nothing on `args` is modified.

    `model_name` is a hub id, a local path, a config, a [`ModelShape`] or a model object. The returned
    `PresetResult.changes` maps field names to the new values; [`apply_memory_preset`] writes them.
    """
    import copy

    hardware = hardware or detect_hardware()
    tier_name = resolve_tier(name, hardware)
    tier = TIERS[tier_name]
    explicit = explicit_fields(args) if explicit is None else explicit
    planned = copy.copy(args)  # shallow: model_init_kwargs is replaced, never mutated
    rows: list[PresetRow] = []
    changes: dict[str, Any] = {}

    def propose(setting: str, value: Any, reason: str) -> None:
        current = _get(planned, setting)
        if _is_explicit(setting, explicit):
            if current != value:
                rows.append(PresetRow(setting, value, current, "kept: explicit", "set in the recipe or command line"))
            return
        if current != value:
            _set(planned, setting, value)
            changes[setting] = value
            rows.append(PresetRow(setting, value, value, "changed", reason))

    loaded_model = (
        model_name is not None and not isinstance(model_name, (str, ModelShape)) and hasattr(model_name, "parameters")
    )

    # Method: what the caller passed wins; QLoRA needs bitsandbytes 4-bit and a model that is still to be loaded.
    method = _method_of(peft_config, quantization_config, args)
    method_explicit = method is not None or getattr(model_name, "is_loaded_in_4bit", False)
    if method is None:
        method = tier.method
        if method == "qlora" and not hardware.bnb_4bit and tier.accelerator == hardware.accelerator:
            method = "lora"
            rows.append(PresetRow("method", "qlora", "lora", "unavailable", "bitsandbytes 4-bit is not usable here"))
        elif method == "qlora" and loaded_model:
            method = "lora"
            rows.append(PresetRow("method", "qlora", "lora", "unavailable", "the model is already loaded"))
        else:
            rows.append(PresetRow("method", tier.method, method, "changed", f"{tier.name} tier"))
    elif method != tier.method:
        rows.append(PresetRow("method", tier.method, method, "kept: explicit", "peft/quantization config passed"))

    # Precision: bf16 autocast where supported, fp16 otherwise; float32 on CPU.
    if tier.accelerator == "cpu":
        compute = "float32"
        propose("bf16", False, "CPU: float32 training")
        propose("fp16", False, "CPU: float32 training")
    else:
        compute = "bfloat16" if hardware.bf16 or hardware.accelerator == "cpu" else "float16"
        propose("bf16", compute == "bfloat16", "bf16 supported" if compute == "bfloat16" else "no bf16 here")
        propose("fp16", compute == "float16", "no bf16 here: fp16 mixed precision" if compute == "float16" else "")
        compute = _dtype_name(planned)

    # Load dtype: half precision weights except for float32 master weights (80gb) and fp16 full fine-tuning, which
    # needs float32 weights for the gradient scaler.
    if not loaded_model:
        init_kwargs = dict(getattr(planned, "model_init_kwargs", None) or {})
        if compute == "float32" or (method == "full" and (tier.master_weights_fp32 or compute == "float16")):
            load_dtype = "float32"
        else:
            load_dtype = compute
        if "dtype" not in init_kwargs and "torch_dtype" not in init_kwargs:
            if load_dtype != "float32":  # float32 is what TRL loads by default
                init_kwargs["dtype"] = load_dtype
                reason = "half-precision weights" + (" (4-bit projections)" if method == "qlora" else "")
                rows.append(PresetRow("model_init_kwargs.dtype", load_dtype, load_dtype, "changed", reason))
        elif (init_kwargs.get("dtype") or init_kwargs.get("torch_dtype")) != load_dtype:
            current = init_kwargs.get("dtype") or init_kwargs.get("torch_dtype")
            rows.append(PresetRow("model_init_kwargs.dtype", load_dtype, current, "kept: explicit", "set by the user"))
        if hardware.flash_attention and "attn_implementation" not in init_kwargs and tier.accelerator == "cuda":
            init_kwargs["attn_implementation"] = "flash_attention_2"
            rows.append(PresetRow("model_init_kwargs.attn_implementation", "flash_attention_2", "flash_attention_2",
                                  "changed", "FlashAttention is installed"))  # fmt: skip
        if init_kwargs != (getattr(planned, "model_init_kwargs", None) or {}):
            planned.model_init_kwargs = init_kwargs
            changes["model_init_kwargs"] = init_kwargs

    # Batch: the tier's micro-batch, accumulation chosen to keep the recipe's effective batch size.
    bs_explicit = _is_explicit("per_device_train_batch_size", explicit)
    ga_explicit = _is_explicit("gradient_accumulation_steps", explicit)
    if bs_explicit or ga_explicit:
        effective = args.per_device_train_batch_size * args.gradient_accumulation_steps
        why = "keeps the recipe's effective batch of"
    else:
        effective = tier.effective_batch_size
        why = "effective batch"
    micro = min(tier.per_device_train_batch_size, effective)
    propose("per_device_train_batch_size", micro, f"fits the {tier.name} tier")
    accumulation = max(1, effective // planned.per_device_train_batch_size)
    propose("gradient_accumulation_steps", accumulation, f"{why} {effective}")

    propose("gradient_checkpointing", tier.gradient_checkpointing, "recompute activations in backward")
    optim = tier.optim
    if "8bit" in optim and not hardware.bnb_4bit and tier.accelerator == hardware.accelerator:
        optim = "adamw_torch_fused"
    propose("optim", optim, "8-bit states: 2 B/param" if "8bit" in optim else "fused AdamW: no update copy")
    propose("max_length", tier.max_length, "sequence length this tier is sized for")
    if hardware.flash_attention and tier.accelerator == "cuda":
        propose("padding_free", True, "FlashAttention: no padding tokens in the batch")
    if hardware.liger_kernel and tier.accelerator == "cuda":
        propose("use_liger_kernel", True, "Liger kernels are installed")

    # PEFT / 4-bit configs, only when the caller passed none.
    new_peft, new_quant = peft_config, quantization_config
    if not method_explicit and method in ("lora", "qlora"):
        new_peft = lora_config(tier.lora_r or 16)
        rows.append(PresetRow("peft_config", f"LoRA r={new_peft.r}", f"LoRA r={new_peft.r}", "changed",
                              "all 7 projections, alpha 2r, dropout 0"))  # fmt: skip
        if method == "qlora":
            new_quant = qlora_quantization_config(compute if compute != "float32" else "bfloat16")
            rows.append(PresetRow("quantization_config", "NF4 + double quant", "NF4 + double quant", "changed",
                                  f"4-bit weights, {compute} compute"))  # fmt: skip

    # Estimate and budget.
    device = "cpu" if tier.accelerator == "cpu" else hardware.accelerator if hardware.devices else "cuda"
    if tier.accelerator == "cpu":
        budget = hardware.host_ram_available or hardware.host_ram
    else:
        budget = tier.capacity
        if hardware.accelerator != "cpu" and hardware.devices:
            budget = min(budget, hardware.device_memory)
    shape = _shape_or_none(model_name, rows)
    estimate = None
    culprits: list[str] = []
    if shape is not None:
        estimate = estimate_for_run(
            planned, model_name, peft_config=new_peft, quantization_config=new_quant, device=device, shape=shape
        )
        if estimate.total_bytes > budget:
            culprits = _find_culprits(planned, tier, explicit, model_name, new_peft, new_quant, device, shape, budget)
            for row in rows:
                if row.setting in culprits and row.status == "kept: explicit":
                    row.status = "breaks the budget"
            for culprit in culprits:
                if not any(row.setting == culprit for row in rows):
                    rows.append(PresetRow(culprit, "-", _get(planned, culprit), "breaks the budget", "explicit"))
    return PresetResult(
        tier=tier_name,
        requested=name,
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
    )


def _shape_or_none(model: Any, rows: list[PresetRow]) -> ModelShape | None:
    if model is None or model == "":
        rows.append(PresetRow("estimate", "-", "-", "unavailable", "no model name: nothing to estimate"))
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
        if not _is_explicit(setting, explicit) or _get(planned, setting) == value:
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


def copy_with(args: Any, setting: str, value: Any) -> Any:
    import copy

    trial = copy.copy(args)
    _set(trial, setting, value)
    return trial


# --- applying ----------------------------------------------------------------------------------------------------
def apply_memory_preset(
    args: Any,
    *,
    model_name: Any,
    peft_config: Any = None,
    quantization_config: Any = None,
    hardware: HardwareInfo | None = None,
    print_table: bool | None = None,
) -> PresetResult:
    """Apply `args.memory_preset` to `args` in place, before the model is loaded, and return what was decided.

    Prints one table of changes and conflicts (main process only). Raises [`MemoryBudgetError`] when the estimate
    exceeds the device and `args.memory_preset_force` is off, and [`UnknownPresetError`] for an unknown name.
    """
    name = str(args.memory_preset).lower()
    if name == "none":
        raise ValueError("memory_preset is `none`: there is nothing to apply.")
    hardware = hardware or detect_hardware()
    tier_name = resolve_tier(name, hardware)
    force = bool(getattr(args, "memory_preset_force", False))
    if TIERS[tier_name].accelerator == "cuda" and hardware.accelerator == "cpu" and not force:
        raise MemoryBudgetError(
            f"memory_preset={name} is a GPU tier, but no GPU was found. Use memory_preset=cpu or auto, or set "
            "memory_preset_force: true to apply it anyway."
        )
    try:
        result = plan_memory_preset(
            name, args, model_name=model_name, peft_config=peft_config, quantization_config=quantization_config,
            hardware=hardware,
        )  # fmt: skip
    except ModelShapeError as error:
        raise ModelShapeError(f"memory_preset={name}: {error}") from error
    for setting, value in result.changes.items():
        _set(args, setting, value)
    setattr(args, RESULT_ATTR, result)

    if print_table is None:
        print_table = getattr(args, "process_index", 0) == 0
    if print_table:
        from rich.console import Console

        Console().print(result.table())
    if not result.fits and not force:
        raise MemoryBudgetError(
            f"memory_preset={result.tier}: the estimate ({result.estimate.total_gib:.1f} GiB) exceeds the "
            f"{result.budget / GIB:.1f} GiB budget{result.suggestion()}. Set memory_preset_force: true to start "
            "anyway, or memory_preset: none to leave memory to the recipe."
        )
    return result


def preset_result_of(args: Any) -> PresetResult | None:
    """The preset applied to these training arguments, if any."""
    return getattr(args, RESULT_ATTR, None)


# --- out of memory during training ----------------------------------------------------------------------------------
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


def measured_peak_bytes() -> tuple[int, str]:
    """The peak memory so far: CUDA/MPS allocator peak, else the process's peak RSS."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_reserved()), "peak reserved CUDA memory"
    if torch.backends.mps.is_available():
        return int(torch.mps.driver_allocated_memory()), "MPS driver memory"
    from .callbacks.memory import peak_rss

    return peak_rss(), "peak RSS"


def out_of_memory_message(args: Any, error: BaseException) -> str:
    peak, what = measured_peak_bytes()
    result = preset_result_of(args)
    parts = [f"Out of memory during training ({type(error).__name__}). Measured {what}: {peak / GIB:.2f} GiB."]
    if result is not None and result.estimate is not None:
        parts.append(f"Estimate under memory_preset={result.tier}: {result.estimate.total_gib:.2f} GiB.")
        smaller = next_smaller_tier(result.tier)
        if smaller:
            parts.append(f"Try memory_preset={smaller}")
        else:
            parts.append("Try")
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


def handle_out_of_memory(trainer: Any, error: BaseException) -> None:
    """Called by `SmolSFTTrainer.training_step` on an exception: returns (the caller re-raises) or raises.

    - `memory_preset: auto` with `auto_find_batch_size`: halve the per-device batch, double the accumulation (the
      effective batch stays) and let transformers' batch-size finder restart the loop at that batch size.
    - `auto_find_batch_size` without `auto`: transformers' own retry (90% of the batch) proceeds unchanged.
    - `memory_preset: none`: the original error, as in stock TRL.
    - otherwise: raise [`PresetOutOfMemoryError`] naming the measured peak, the estimate and the next smaller preset.
    """
    args = trainer.args
    result = preset_result_of(args)
    if result is None or not is_out_of_memory(error):
        return  # memory_preset: none behaves as stock TRL
    if args.auto_find_batch_size:
        current = getattr(trainer, "_train_batch_size", args.per_device_train_batch_size)
        if result.requested == "auto" and current > 1:
            half = current // 2
            args.gradient_accumulation_steps *= 2
            trainer._smol_retry_batch_size = half
            if args.process_index == 0:
                from rich.console import Console

                Console(stderr=True).print(
                    f"[yellow]trl-smol: out of memory at per-device batch {current}; retrying with batch {half} and "
                    f"gradient_accumulation_steps {args.gradient_accumulation_steps}[/yellow]"
                )
            return  # the caller re-raises the original error, which transformers' batch-size finder catches
        if result.requested != "auto":
            return
    raise PresetOutOfMemoryError(out_of_memory_message(args, error)) from error


def retry_batch_size(trainer: Any, batch_size: int) -> int:
    """The batch size a restarted training loop should use: ours after an OOM under `auto`, else transformers'."""
    return getattr(trainer, "_smol_retry_batch_size", None) or batch_size


def with_tier(tier: MemoryTier, **changes: Any) -> MemoryTier:
    """A copy of a tier with some values changed, e.g. to plan a custom preset."""
    return replace(tier, **changes)


def known_model_ids() -> tuple[str, ...]:
    return tuple(KNOWN_MODELS)
