"""`trl-smol doctor`: the hardware, the memory preset a recipe gets, what it changes, whether it fits, its time.

```bash
trl-smol doctor                                   # SmolLM3-3B-Base with TRL's defaults
trl-smol doctor --config recipes/smollm3_qlora.yaml
trl-smol doctor --config recipe.yaml --preset auto   # what `memory_preset: auto` would change
trl-smol doctor --config recipe.yaml --preset 16gb   # plan for another machine's tier
trl-smol doctor --config recipes/smollm3_full.yaml --accelerate_config recipes/accelerate/zero3.yaml --preset 40gb
trl-smol doctor --config recipes/smollm3_lora.yaml --hardware l4           # plan for a machine you do not have
trl-smol doctor --config recipes/smollm3_full.yaml --hardware 8xh100-80gb+fa3
```

`--hardware` names a described machine (`trl_smol.memory.devices`): the same planner runs on its GPUs as torch would
report them, `auto` picks that GPU's tier, and the verdict names it.

With an accelerate config that shards (ZeRO, FSDP), the verdict is per GPU after sharding (`trl_smol.memory.sharding`).

The recipe is read with the parser of `trl sft`, without building the training arguments, so a GPU recipe can be
checked on a laptop; its keys and values are checked as `trl sft` checks them (a mistyped key, `max_length: -1`, an
unknown `optim` are the same one-line errors). What is shown is what the run applies: the recipe's `memory_preset`
(none: the settings as written, and their estimate), or the preset `--preset` names. The verdict follows what the run
would do on this machine: a recipe that needs a CUDA GPU here, or 4-bit weights where bitsandbytes cannot quantize,
"does not run here", with the line `trl sft` stops with (`trl_smol.memory.requirements`). The estimated time of a step
and of the run comes from the step-time model (`trl_smol.memory.speed`). On a described machine, what its name says
is installed (bitsandbytes on CUDA; FlashAttention only with `+fa2`/`+fa3`).
Exit status: 0 when the run fits, 1 when it does not (or does not run here), 2 on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from typing import Any

from rich.console import Console
from rich.table import Table

from ..memory import GIB, HardwareInfo, MemoryBudgetError, ModelShapeError, breakdown_table, detect_hardware
from ..memory.as_written import as_written_verdict, estimated_time, memory_budget
from ..memory.devices import DEVICE_NAMES, UnknownDeviceError, described_hardware
from ..memory.hardware import bitsandbytes_4bit_error
from ..memory.preset_result import plans_table
from ..memory.requirements import hardware_problem
from ..memory.run_settings import estimate_for_run
from ..memory.tiers import PRESET_NAMES, TIERS, Preset, UnknownPresetError, requested_preset
from ..settings import UserSettings
from .arguments import one_line_errors, recipe_parser

DEFAULT_MODEL = "HuggingFaceTB/SmolLM3-3B-Base"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="Recipe (YAML) to check; without it, TRL's defaults.")
    parser.add_argument(
        "--preset", choices=PRESET_NAMES, help="Memory preset to plan with (default: the recipe's, or auto)."
    )
    parser.add_argument("--model", help=f"Model to plan for when the recipe names none (default {DEFAULT_MODEL}).")
    parser.add_argument(
        "--accelerate_config",
        help="Accelerate config of a sharded run (ZeRO / FSDP): show the per-GPU estimate after sharding "
        "(default: the recipe's `accelerate_config`).",
    )
    parser.add_argument(
        "--num_processes",
        type=int,
        help="Processes of the sharded run (default: the GPUs of a described machine, else the config's).",
    )
    parser.add_argument(
        "--hardware",
        metavar="NAME",
        help=f"Plan for a described machine instead of this one: {', '.join(DEVICE_NAMES)}; `8xh100-80gb` for 8 "
        "GPUs, `+fa2`/`+fa3`/`+liger`/`+offline` for what it has installed (docs/memory.md).",
    )


def recipe_values(recipe: dict[str, Any], config_path: str | None = None) -> Any:
    """The recipe's values as `trl sft` reads them: its keys and values checked by the same parser (raises what
    `trl sft` raises: `UnknownRecipeKeyError`, `RecipeValueError`, ...)."""
    return recipe_parser().recipe_values(recipe, config_path)


def recipe_arguments(recipe: dict[str, Any], values: Any = None, *, bf16_default: bool | None = None) -> Any:
    """Training arguments as the recipe sets them (over `SmolSFTConfig` defaults), without TrainingArguments checks.

    `values`: the recipe's values from [`recipe_values`] (read here when not given). `bf16_default`: what `bf16` left
    unset becomes on the machine planned for (None: TRL's rule, bf16 unless fp16). The keys the recipe sets are the
    run's explicit settings, as the recipe parser records them for `trl sft`.
    """
    from ..config import SmolSFTConfig

    values = values if values is not None else recipe_values(recipe)
    names = {f.name for f in dataclasses.fields(SmolSFTConfig) if f.init}
    arguments = types.SimpleNamespace(**{key: value for key, value in vars(values).items() if key in names})
    if getattr(arguments, "activation_checkpointing", None) is not None:
        arguments.gradient_checkpointing = arguments.activation_checkpointing
    if arguments.bf16 is None:
        arguments.bf16 = (not arguments.fp16) if bf16_default is None else bf16_default and not arguments.fp16
    model_keys = {key: recipe[key] for key in ("attn_implementation", "dtype") if recipe.get(key)}
    if model_keys:  # ModelConfig keys: `trl sft` passes them in model_init_kwargs
        arguments.model_init_kwargs = model_keys | dict(arguments.model_init_kwargs or {})
    arguments.process_index = 0
    return arguments


def recipe_peft(recipe: dict[str, Any]) -> tuple[Any, Any]:
    """The LoRA and 4-bit configs `trl sft` builds from the recipe's ModelConfig keys, or None."""
    peft_config = quantization_config = None
    if recipe.get("use_peft"):
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=int(recipe.get("lora_r", 16)),
            lora_alpha=int(recipe.get("lora_alpha", 32)),
            lora_dropout=float(recipe.get("lora_dropout", 0.05)),
            target_modules=recipe.get("lora_target_modules"),
            task_type="CAUSAL_LM",
        )
    if recipe.get("load_in_4bit"):
        quantization_config = types.SimpleNamespace(
            load_in_4bit=True, bnb_4bit_use_double_quant=bool(recipe.get("use_bnb_nested_quant", False))
        )
    return peft_config, quantization_config


def hardware_table(hardware: HardwareInfo) -> Table:
    table = Table(title="Hardware")
    table.add_column("item")
    table.add_column("value")
    table.add_row("accelerator", hardware.accelerator)
    start = 0
    for index, device in enumerate(hardware.devices):
        if index + 1 < hardware.count and hardware.devices[index + 1] == device:
            continue  # identical devices share one row
        capability = ".".join(map(str, device.compute_capability)) if device.compute_capability else "-"
        table.add_row(
            f"device {start}" if start == index else f"devices {start}-{index}",
            f"{device.name}: {device.total_memory / GIB:.1f} GiB total, {device.free_memory / GIB:.1f} GiB free, "
            f"compute capability {capability}",
        )
        start = index + 1
    table.add_row("host RAM", f"{hardware.host_ram / GIB:.1f} GiB ({hardware.host_ram_available / GIB:.1f} available)")
    table.add_row("bf16", _yes(hardware.bf16))
    table.add_row("bitsandbytes 4-bit", _yes(hardware.bnb_4bit))
    table.add_row("attention kernels", ", ".join(hardware.attention_kernels))
    hub = "offline" if hardware.hub_offline else "online"
    table.add_row("Hub kernels", f"[green]yes[/green] (Hub {hub})" if hardware.hub_kernels else "no")
    table.add_row("Liger kernels", _yes(hardware.liger_kernel))
    for note in hardware.notes:
        table.add_row("note", note)
    return table


def four_bit_problem(plan: Any, hardware: HardwareInfo, *, detected: bool) -> str | None:
    """Why this machine cannot load the plan's 4-bit weights, or None (also when planning another machine's tier).

    On the detected machine a tiny NF4 quantisation is tried, as the trainer does before loading; for a described
    machine (`hardware` passed in) its `bnb_4bit` says it.
    """
    if not getattr(plan.quantization_config, "load_in_4bit", False):
        return None
    if plan.preset is not None and TIERS[plan.preset.tier].accelerator != hardware.accelerator:
        return None  # e.g. `--preset 16gb` on a laptop: a plan for another machine
    if detected:
        return bitsandbytes_4bit_error()
    return None if hardware.bnb_4bit else "no 4-bit backend for this hardware"


def _does_not_run_here(plan: Any, values: Any, hardware: HardwareInfo, *, detected: bool, recipe_path: str | None):
    """Why the run cannot start on the machine planned for, as `trl sft` would say it, or None. A plan for another
    machine's tier (`--preset 16gb` on a laptop) is not judged by this machine."""
    if plan.preset is not None and TIERS[plan.preset.tier].accelerator != hardware.accelerator:
        return None
    if detected:
        four_bit_error = lambda: bitsandbytes_4bit_error()  # noqa: E731 - looked up when called (tests replace it)
    else:
        four_bit_error = lambda: None if hardware.bnb_4bit else "no 4-bit backend for this hardware"  # noqa: E731
    problem = hardware_problem(values, hardware, recipe=recipe_path, four_bit_error=four_bit_error)
    if problem is None and not getattr(values, "load_in_4bit", False):
        four_bit = four_bit_problem(plan, hardware, detected=detected)  # the preset chose QLoRA
        if four_bit is not None:
            problem = (
                f"memory_preset {plan.preset.tier} trains QLoRA (4-bit weights), but bitsandbytes cannot quantize "
                f"to 4-bit on this machine ({four_bit}). Choose a LoRA preset (`memory_preset: 16gb`) or install a "
                "bitsandbytes build with a backend for this device."
            )
    return problem


def _bf16_default(values: Any, hardware: HardwareInfo, *, detected: bool) -> bool:
    """What `bf16` left unset becomes on the machine planned for: bf16 where transformers accepts it (a bf16 GPU, or
    `use_cpu`), else float32, as `trl sft` with the plugin decides it (features/precision.py)."""
    if detected:
        from ..features.precision import bf16_trainable

        return bf16_trainable(bool(values.use_cpu))
    return bool(values.use_cpu) or (hardware.accelerator != "cpu" and hardware.bf16)


def slow_precision_as_written(
    recipe: dict[str, Any], training_args: Any, hardware: HardwareInfo, *, detected: bool
) -> str | None:
    """The slow-bf16 warning when the recipe as written (no preset) trains with bf16 autocast on this machine's CPU
    without native bf16 support: TRL's default `bf16: true` with `use_cpu: true`, or on a machine without a GPU."""
    from ..features.precision import slow_bf16_warning

    if requested_preset(recipe.get("memory_preset", Preset.NONE)) is not Preset.NONE or not detected:
        return None  # a preset decides the precision (the plan above); another machine's CPU is unknown
    on_cpu = bool(recipe.get("use_cpu")) or hardware.accelerator == "cpu"
    return slow_bf16_warning("bf16" if training_args.bf16 else "float32", use_cpu=on_cpu)


def _yes(value: bool) -> str:
    return "[green]yes[/green]" if value else "no"


@one_line_errors("doctor")
def run(args: argparse.Namespace, hardware: HardwareInfo | None = None) -> int:
    import yaml

    from ..plan import plan_run

    console = Console()

    def fail(message: str) -> int:
        console.print(f"trl-smol doctor: {message}", soft_wrap=True, markup=False, style="red")
        return 2

    recipe: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as file:
                recipe = yaml.safe_load(file) or {}
        except (OSError, yaml.YAMLError) as error:
            return fail(f"cannot read recipe {args.config}: {error}")
        if not isinstance(recipe, dict):
            return fail(f"recipe {args.config} is not a mapping of keys to values")
    try:  # the recipe's keys and values, checked as `trl sft` checks them
        values = recipe_values(recipe, args.config)
        preset = requested_preset(args.preset or values.memory_preset)
    except ValueError as error:  # UnknownRecipeKeyError, RecipeValueError, UnknownPresetError, a feature's check
        return fail(str(error))
    model = args.model or values.model_name_or_path or DEFAULT_MODEL
    described = getattr(args, "hardware", None)
    if hardware is None and described:
        try:
            hardware = described_hardware(described)
        except UnknownDeviceError as error:
            return fail(f"--hardware: {error}")
    detected = hardware is None
    hardware = hardware or detect_hardware()
    training_args = recipe_arguments(recipe, values, bf16_default=_bf16_default(values, hardware, detected=detected))
    peft_config, quantization_config = recipe_peft(vars(values))
    # Planning only: a GPU tier may be checked on a machine without a GPU (`--preset 16gb` on a laptop).
    training_args.memory_preset, training_args.memory_preset_force = preset, True
    explicit = frozenset(recipe)  # as the recipe parser records them for `trl sft`
    verdict = f"Verdict for `{described}` ({hardware.name}, described)" if described else "Verdict"
    if described:
        console.print(f"Planning for a described machine, `{described}`, not this one.", soft_wrap=True)
    console.print(hardware_table(hardware))
    accelerate_config = getattr(args, "accelerate_config", None) or recipe.get("accelerate_config")
    sharding = None
    if accelerate_config:  # a sharded run is planned per process (memory/sharding.py)
        from ..launch import accelerate_config_path
        from ..memory.sharding import sharding_from_accelerate_config

        processes = getattr(args, "num_processes", None) or (hardware.count if described else None)
        path = accelerate_config_path(["--accelerate_config", accelerate_config])
        sharding = sharding_from_accelerate_config(path, processes)
    try:
        plan = plan_run(
            training_args,
            model_name=model,
            peft_config=peft_config,
            quantization_config=quantization_config,
            hardware=hardware,
            explicit=explicit,
            user=UserSettings(explicit, args.config, recipe),
            sharding=sharding,
        )
    except (UnknownPresetError, ModelShapeError, MemoryBudgetError) as error:
        return fail(str(error))
    result = plan.preset
    if result is not None:
        source = " (--preset)" if args.preset and requested_preset(values.memory_preset) is not preset else ""
        auto = " (auto)" if preset is Preset.AUTO else ""
        console.print(plan.preset_table(title=f"Preset `{result.tier}` for {model}{auto}{source}"))
        if result.batch is not None:
            console.print(plans_table(result))
        estimate, budget, fits, verdict_text = result.estimate, result.budget, result.fits, result.verdict
    else:
        console.print(
            "No memory preset (`memory_preset: none`): the run trains with the recipe's settings as written. "
            "`--preset auto` shows what `memory_preset: auto` would change.",
            soft_wrap=True,
        )
        try:
            estimate = estimate_for_run(
                training_args, model, peft_config=peft_config, quantization_config=quantization_config,
                device=hardware.accelerator if hardware.devices else "cpu",
                **(sharding.estimate_kwargs() if sharding is not None else {}),
            )  # fmt: skip
        except ModelShapeError as error:
            return fail(str(error))
        budget = memory_budget(hardware)
        fits, verdict_text = estimate.total_bytes <= budget, as_written_verdict(estimate.total_bytes, budget)
    if estimate is not None:
        where = f" per GPU, {sharding.label} ({accelerate_config})" if sharding is not None else ""
        console.print(breakdown_table(estimate, title=f"Estimated peak memory{where}", budget=budget))
    attention = plan["attention"]
    console.print(
        f"Training method: {plan.method}; precision: {plan.precision}; attention: {attention.value} "
        f"({attention.reason})",
        soft_wrap=True,
    )
    problem = _does_not_run_here(plan, values, hardware, detected=detected, recipe_path=args.config)
    time = estimated_time(plan.preset, plan.method, training_args, model, hardware) if problem is None else None
    if time:
        console.print(time, soft_wrap=True)
    if attention.warning:
        console.print(f"[bold yellow]{attention.warning}[/bold yellow]", soft_wrap=True)
    slow = slow_precision_as_written(recipe, training_args, hardware, detected=detected)
    if slow:
        console.print(f"[bold yellow]As written: {slow}[/bold yellow]", soft_wrap=True)
    if plan.precision == "bf16" and hardware.accelerator == "cuda" and not hardware.bf16:
        console.print(
            f"[bold yellow]bf16 on {hardware.name}, which has no bf16: transformers stops before training "
            '("doesn\'t support bf16/gpu"). Set `bf16: false`, or leave it unset under a memory preset (fp16 '
            "here).[/bold yellow]",
            soft_wrap=True,
        )
    if problem is not None:
        console.print(f"{verdict}: does not run here: {problem}", soft_wrap=True, markup=False, style="bold red")
        return 1
    style = "green" if fits else "red"
    after = " per GPU after sharding" if sharding is not None and sharding.stage else ""
    console.print(f"{verdict}{after}: {verdict_text}", soft_wrap=True, markup=False, style=f"bold {style}")
    return 0 if fits else 1
