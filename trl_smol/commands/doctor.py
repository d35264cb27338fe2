"""`trl-smol doctor`: the hardware, the memory preset a recipe would get, what it changes, and whether it fits.

```bash
trl-smol doctor                                   # SmolLM3-3B-Base with TRL's defaults under `auto`
trl-smol doctor --config recipes/smollm3_qlora.yaml
trl-smol doctor --config recipe.yaml --preset 16gb   # plan for another machine's tier
trl-smol doctor --config recipes/smollm3_full.yaml --accelerate_config recipes/accelerate/zero3.yaml --preset 40gb
trl-smol doctor --config recipes/smollm3_lora.yaml --hardware l4           # plan for a machine you do not have
trl-smol doctor --config recipes/smollm3_full.yaml --hardware 8xh100-80gb+fa3
```

`--hardware` names a described machine (`trl_smol.memory.devices`): the same planner runs on its GPUs as torch would
report them, `auto` picks that GPU's tier, and the verdict names it.

With an accelerate config that shards (ZeRO, FSDP), the verdict is per GPU after sharding (`trl_smol.memory.sharding`).

The recipe is read as YAML without building the training arguments, so a GPU recipe can be checked on a laptop; its
keys are checked as `trl sft` checks them (a mistyped key is an error). The verdict follows what the run would do on
this machine: QLoRA where bitsandbytes cannot quantize to 4-bit here "does not run here", as the trainer would stop.
On a described machine, what its name says is installed (bitsandbytes on CUDA; FlashAttention only with `+fa2`/`+fa3`).
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
from ..memory.devices import DEVICE_NAMES, UnknownDeviceError, described_hardware
from ..memory.hardware import bitsandbytes_4bit_error
from ..memory.preset_result import plans_table
from ..memory.tiers import PRESET_NAMES, TIERS, Preset, UnknownPresetError, requested_preset
from ..parser import UnknownRecipeKeyError
from ..settings import UserSettings
from .arguments import recipe_parser

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


def recipe_arguments(recipe: dict[str, Any]) -> types.SimpleNamespace:
    """Training arguments as the recipe sets them, over `SmolSFTConfig` defaults, without TrainingArguments checks.

    The keys the recipe sets are the run's explicit settings, as the recipe parser records them for `trl sft`.
    """
    from ..config import SmolSFTConfig

    values: dict[str, Any] = {}
    for f in dataclasses.fields(SmolSFTConfig):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    names = set(values)
    values.update({key: value for key, value in recipe.items() if key in names})
    if values.get("activation_checkpointing") is not None:
        values["gradient_checkpointing"] = values["activation_checkpointing"]
    if values.get("bf16") is None:
        values["bf16"] = not values.get("fp16")  # TRL's rule
    model_keys = {key: recipe[key] for key in ("attn_implementation", "dtype") if recipe.get(key)}
    if model_keys:  # ModelConfig keys: `trl sft` passes them in model_init_kwargs
        values["model_init_kwargs"] = model_keys | dict(values.get("model_init_kwargs") or {})
    values["process_index"] = 0
    return types.SimpleNamespace(**values)


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


def _does_not_run_here(problem: str, recipe: dict[str, Any], tier: str) -> str:
    if recipe.get("load_in_4bit"):
        return (
            f"does not run here: the recipe asks for 4-bit weights (`load_in_4bit: true`), but bitsandbytes cannot "
            f"quantize to 4-bit on this machine ({problem}); the run would stop before loading the model. Remove "
            "`load_in_4bit` and set `memory_preset: auto`, which trains LoRA in 16-bit here, or install a "
            "bitsandbytes build with a backend for this device."
        )
    return (
        f"does not run here: memory_preset {tier} trains QLoRA (4-bit weights), but bitsandbytes cannot quantize to "
        f"4-bit on this machine ({problem}). Choose a LoRA preset (`memory_preset: 16gb`) or install a bitsandbytes "
        "build with a backend for this device."
    )


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


def run(args: argparse.Namespace, hardware: HardwareInfo | None = None) -> int:
    import yaml

    from ..plan import plan_run

    console = Console()
    recipe: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as file:
                recipe = yaml.safe_load(file) or {}
        except (OSError, yaml.YAMLError) as error:
            console.print(f"[red]trl-smol doctor: cannot read recipe {args.config}: {error}[/red]", soft_wrap=True)
            return 2
        if not isinstance(recipe, dict):
            console.print(
                f"[red]trl-smol doctor: recipe {args.config} is not a mapping of keys to values[/red]", soft_wrap=True
            )
            return 2
        try:
            recipe_parser().check_recipe_keys(recipe, args.config)
        except UnknownRecipeKeyError as error:
            console.print(f"[red]trl-smol doctor: {error}[/red]", soft_wrap=True)
            return 2
    model = args.model or recipe.get("model_name_or_path") or DEFAULT_MODEL
    try:
        preset = requested_preset(args.preset or recipe.get("memory_preset") or Preset.AUTO)
    except UnknownPresetError as error:
        console.print(f"[red]trl-smol doctor: {error}[/red]", soft_wrap=True)
        return 2
    if preset is Preset.NONE:
        console.print("The recipe says memory_preset: none; showing what `auto` would do.")
        preset = Preset.AUTO
    training_args = recipe_arguments(recipe)
    peft_config, quantization_config = recipe_peft(recipe)

    # Planning only: a GPU tier may be checked on a machine without a GPU (`--preset 16gb` on a laptop).
    training_args.memory_preset, training_args.memory_preset_force = preset, True
    explicit = frozenset(recipe)  # as the recipe parser records them for `trl sft`
    described = getattr(args, "hardware", None)
    if hardware is None and described:
        try:
            hardware = described_hardware(described)
        except UnknownDeviceError as error:
            console.print(f"[red]trl-smol doctor: --hardware: {error}[/red]", soft_wrap=True)
            return 2
    detected = hardware is None
    hardware = hardware or detect_hardware()
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
        console.print(f"[red]trl-smol doctor: {error}[/red]", soft_wrap=True)
        return 2
    result = plan.preset
    console.print(
        plan.preset_table(title=f"Preset `{result.tier}` for {model}" + (" (auto)" if preset is Preset.AUTO else ""))
    )
    if result.batch is not None:
        console.print(plans_table(result))
    if result.estimate is not None:
        where = f" per GPU, {sharding.label} ({accelerate_config})" if sharding is not None else ""
        console.print(breakdown_table(result.estimate, title=f"Estimated peak memory{where}", budget=result.budget))
    attention = plan["attention"]
    console.print(
        f"Training method: {plan.method}; precision: {plan.precision}; attention: {attention.value} "
        f"({attention.reason})",
        soft_wrap=True,
    )
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
    problem = four_bit_problem(plan, hardware, detected=detected)
    if problem is not None:
        console.print(
            f"[bold red]{verdict}: {_does_not_run_here(problem, recipe, result.tier)}[/bold red]", soft_wrap=True
        )
        return 1
    style = "green" if result.fits else "red"
    after = " per GPU after sharding" if sharding is not None and sharding.stage else ""
    console.print(f"[bold {style}]{verdict}{after}: {result.verdict}[/bold {style}]", soft_wrap=True)
    return 0 if result.fits else 1
