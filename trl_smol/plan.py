"""The run plan: everything the plugin decided for one run, resolved once before the model loads.

A [`RunPlan`] says what the user set (the recipe, the command line or the config's constructor), what a memory preset
changed and why, the training method, the precision, whether the SmolLM3 chat template applies and why, and which
callbacks the plugin adds. `SmolSFTTrainer` builds it with [`plan_run`] and hands it to its callbacks, the banner, the
out-of-memory handler and the model card; `trl-smol doctor` builds the same plan from a recipe without loading a model.

```python
from trl_smol.plan import plan_run

plan = plan_run(args, model_name="HuggingFaceTB/SmolLM3-3B-Base", tokenizer=tokenizer, conversational=True)
plan.method              # "qlora" (chosen by the 8gb preset), "lora", "full", or a PEFT type such as "prompt_tuning"
plan.preset.rows         # every change and conflict of the preset, with the reason
plan.banner()            # the one line printed at start-up
```

Nothing here changes the training arguments or the tokenizer: [`apply_run_plan`] does, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .config import UserSettings, bf16_trainable, explicit_settings
from .data.padding_free import PACKED_ATTENTION, packed_attention_supported
from .labelled_scoring import labelled_scoring_problem
from .launch import entered_through_trl_sft, has_accelerator, new_run_id
from .memory import PresetResult
from .memory.hardware import HardwareInfo, cpu_has_native_bf16
from .memory.planner import plan_requested_preset, write_preset
from .models import model_type_of
from .templating import END_OF_TURN, apply_smollm3_template, smollm3_template_reason

# The warning for bf16 autocast where the CPU emulates bf16 (the banner, the trainer's log and `trl-smol doctor`).
SLOW_BF16 = (
    "bf16 autocast on a CPU without native bf16 (no AVX512-BF16, AMX or Arm BF16): torch emulates it, many times "
    "slower than float32 (10.7x per training step of the demo model on an AMD EPYC core). Set `bf16: false`, or "
    "`memory_preset: auto`, which trains in float32 on a CPU."
)


@dataclass(frozen=True)
class RunPlan:
    """What one run does beyond stock TRL, and why. Built by [`plan_run`]; read-only afterwards."""

    entry: str  # "trl sft" or "python"
    run_id: str  # tells this run's samples, trackio config and model card apart from other runs'
    user: UserSettings
    model_name: str | None
    method: str
    precision: str  # "bf16", "fp16" or "float32", after the preset
    precision_reason: str | None  # set when the plugin, not the user, decided the precision
    slow_precision: str | None  # a warning: bf16 autocast on a CPU that emulates bf16
    preset: PresetResult | None
    chat_template: str | None  # why the SmolLM3 template is put on the tokenizer; None keeps the tokenizer's own
    smollm3_template: bool  # the plugin applies its SmolLM3 template in this run (then `today` is fixed too)
    callbacks: tuple[str, ...]
    padding_free: str | None = None  # why batches are padding-free (data/padding_free.py); None: TRL's collator
    distributed: str | None = None  # the engine as it runs (distributed.describe_engine), known once accelerate is up
    cpu_threads: str | None = None  # torch threads the plugin sets, and why; None: the process's own
    labelled_scoring: str | None = None  # why TRL's loss head sees only labelled positions (labelled_scoring.py)
    peft_config: Any = field(default=None, compare=False)
    quantization_config: Any = field(default=None, compare=False)

    @property
    def explicit(self) -> frozenset[str]:
        return self.user.explicit

    @property
    def estimate_bytes(self) -> int | None:
        estimate = self.preset.estimate if self.preset is not None else None
        return estimate.total_bytes if estimate is not None else None

    def features(self) -> dict[str, str]:
        """The plugin's behaviours in this run, by name: what the banner and the model card list."""
        features: dict[str, str] = {}
        if self.precision_reason:
            features["precision"] = f"{self.precision} ({self.precision_reason})"
        elif self.slow_precision:
            features["precision"] = f"{self.precision} (on a CPU without native bf16: slow, see the warning)"
        if self.distributed:
            features["distributed"] = self.distributed
        if self.preset is not None:
            features["memory_preset"] = self.preset.tier
        if self.padding_free:
            features["batches"] = f"padding-free ({self.padding_free})"
        if self.cpu_threads:
            features["threads"] = self.cpu_threads
        if self.labelled_scoring:
            features["loss_positions"] = f"labelled only ({self.labelled_scoring})"
        if self.chat_template:
            features["chat_template"] = f"smollm3 ({self.chat_template})"
        if self.callbacks:
            features["callbacks"] = ",".join(self.callbacks)
        return features

    def banner(self) -> str:
        features = ", ".join(f"{key}={value}" for key, value in self.features().items()) or "no features enabled"
        return f"trl-smol {__version__} active ({self.entry}, run {self.run_id}): {features}"


def training_method(peft_config: Any = None, quantization_config: Any = None, model: Any = None) -> str:
    """`"full"`, `"lora"`, `"qlora"`, or the PEFT type in lower case (`"prompt_tuning"`, `"prefix_tuning"`, ...)."""
    peft_type = getattr(peft_config, "peft_type", None) or _peft_type_of_model(model)
    if peft_type is None:
        return "full"
    name = str(getattr(peft_type, "value", peft_type)).lower()
    if name != "lora":
        return name
    four_bit = getattr(quantization_config, "load_in_4bit", False) or getattr(model, "is_loaded_in_4bit", False)
    return "qlora" if four_bit else "lora"


def _peft_type_of_model(model: Any) -> Any:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return None
    return getattr(next(iter(configs.values())), "peft_type", None)


def plan_run(
    args: Any,
    *,
    model: Any = None,
    model_name: str | None = None,
    peft_config: Any = None,
    quantization_config: Any = None,
    tokenizer: Any = None,
    conversational: bool = False,
    hardware: HardwareInfo | None = None,
    explicit: frozenset[str] | None = None,
    user: UserSettings | None = None,
    custom_collator: bool = False,
    vision: bool = False,
    custom_loss: bool = False,
) -> RunPlan:
    """Resolve the run plan of `args` (a `SmolSFTConfig`, or recipe values for `trl-smol doctor`).

    `model` is a loaded model when the caller passed one, `model_name` the name or path to load. `tokenizer` and
    `conversational` decide the chat template (only chat data is templated). `explicit` overrides the settings the
    user set (default: [`trl_smol.config.explicit_settings`]). `custom_collator` / `vision`: the caller passes its own
    data collator / an image dataset, where padding-free batches cannot apply; `custom_loss`: a `compute_loss_func`,
    where labelled-only scoring cannot. Raises what the preset planner raises: an unknown preset, a GPU tier without
    a GPU, a model whose shape cannot be read; and a `ValueError` for an explicit `smol_padding_free: true` or
    `smol_score_labelled_only: true` that cannot apply.
    """
    user = user or getattr(args, "user_settings", None) or UserSettings()
    explicit = explicit_settings(args) if explicit is None else explicit
    preset = None
    if str(args.memory_preset).lower() != "none":
        preset = plan_requested_preset(
            args,
            model_name=model if model is not None else model_name,
            peft_config=peft_config,
            quantization_config=quantization_config,
            hardware=hardware,
            explicit=explicit,
        )
        peft_config, quantization_config = preset.peft_config, preset.quantization_config

    reason = None
    if tokenizer is not None and conversational:
        reason = smollm3_template_reason(
            tokenizer,
            model_name,
            args.smol_chat_template,
            model_type=model_type_of(model if model is not None else model_name, trust_remote_code=_remote(args)),
            chat_template_path=getattr(args, "chat_template_path", None),
            assistant_only_loss=bool(getattr(args, "assistant_only_loss", False)),
        )

    changes = preset.changes if preset is not None else {}
    padding_free = _padding_free(args, preset, model, custom_collator=custom_collator, vision=vision)
    method = training_method(peft_config, quantization_config, model)
    labelled_scoring = _labelled_scoring(args, preset, method, custom_loss=custom_loss, vision=vision)
    bf16, fp16 = changes.get("bf16", args.bf16), changes.get("fp16", args.fp16)
    precision = "bf16" if bf16 else "fp16" if fp16 else "float32"
    precision_reason = None
    if "bf16" in changes or "fp16" in changes:
        precision_reason = f"memory preset {preset.tier}"
    elif precision == "float32" and not explicit & {"bf16", "fp16"} and not bf16_trainable(args.use_cpu):
        precision_reason = "bf16 left unset; no bf16 device here, where TRL would stop"

    on_cpu = bool(getattr(args, "use_cpu", False)) or not has_accelerator()
    slow_precision = SLOW_BF16 if precision == "bf16" and on_cpu and not cpu_has_native_bf16() else None

    callbacks = list(getattr(args, "callbacks", None) or [])
    if getattr(args, "sample_prompts", None) and "samples" not in callbacks:
        callbacks.insert(0, "samples")
    if preset is not None and "memory" not in callbacks:
        callbacks.append("memory")

    return RunPlan(
        entry="trl sft" if entered_through_trl_sft() else "python",
        run_id=new_run_id(),
        user=user if user.explicit == explicit else UserSettings(explicit, user.recipe_path, user.recipe),
        model_name=model_name,
        method=method,
        precision=precision,
        precision_reason=precision_reason,
        slow_precision=slow_precision,
        preset=preset,
        chat_template=reason,
        smollm3_template=reason is not None,
        callbacks=tuple(callbacks),
        padding_free=padding_free,
        cpu_threads=_cpu_threads(args, preset),
        labelled_scoring=labelled_scoring,
        peft_config=peft_config,
        quantization_config=quantization_config,
    )


def _padding_free(
    args: Any, preset: PresetResult | None, model: Any, *, custom_collator: bool, vision: bool
) -> str | None:
    """Why this run's batches are padding-free, or None. A preset's proposal that cannot apply is withdrawn (its row
    says why); an explicit `smol_padding_free: true` that cannot apply stops the run before the model loads."""
    by_preset = preset is not None and preset.changes.get("smol_padding_free", False)
    if not (by_preset or getattr(args, "smol_padding_free", False)):
        return None
    if model is not None:
        attention = getattr(model.config, "_attn_implementation", None)
    else:
        attention = (getattr(args, "model_init_kwargs", None) or {}).get("attn_implementation")
    problem = None
    if custom_collator:
        problem = "a data_collator was passed, and padding-free batches need TRL's collator"
    elif vision:
        problem = "the dataset has images, whose collator cannot be padding-free"
    elif not packed_attention_supported(attention):
        problem = (
            f"attn_implementation={attention} does not separate packed sequences ({', '.join(PACKED_ATTENTION)} do)"
        )
    return _applies_or_withdrawn("smol_padding_free", problem, preset, by_preset)


def _labelled_scoring(
    args: Any, preset: PresetResult | None, method: str, *, custom_loss: bool, vision: bool
) -> str | None:
    """Why TRL's loss head sees only labelled positions in this run, or None (withdrawn or stopped as padding-free)."""
    by_preset = preset is not None and preset.changes.get("smol_score_labelled_only", False)
    if not (by_preset or getattr(args, "smol_score_labelled_only", False)):
        return None
    problem = labelled_scoring_problem(args, method, custom_loss=custom_loss, vision=vision)
    return _applies_or_withdrawn("smol_score_labelled_only", problem, preset, by_preset)


def _applies_or_withdrawn(
    setting: str, problem: str | None, preset: PresetResult | None, by_preset: bool
) -> str | None:
    """The reason a plugin setting applies, or None with the preset's proposal withdrawn (its row says why); an
    explicit `true` that cannot apply stops the run before the model loads."""
    if problem is None:
        return f"memory preset {preset.tier}" if by_preset else setting
    if not by_preset:
        raise ValueError(f"{setting}: true cannot apply: {problem}. Set `{setting}: false`.")
    del preset.changes[setting]
    for row in preset.rows:
        if row.setting == setting:
            row.value, row.status, row.reason = False, "unavailable", problem
    return None


def _cpu_threads(args: Any, preset: PresetResult | None) -> str | None:
    """`"2 (memory preset cpu)"` when the run sets torch's thread count, else None."""
    if preset is not None and "smol_cpu_threads" in preset.changes:
        return f"{preset.changes['smol_cpu_threads']} (memory preset {preset.tier})"
    threads = getattr(args, "smol_cpu_threads", None)
    return f"{threads} (smol_cpu_threads)" if threads else None


def _remote(args: Any) -> bool:
    return bool(getattr(args, "trust_remote_code", False))


def apply_run_plan(plan: RunPlan, args: Any, tokenizer: Any = None) -> None:
    """Carry out the plan before TRL sees the arguments and the tokenizer: the preset's changes (stopping when the
    estimate breaks the budget, see `trl_smol.memory.planner.write_preset`) and the SmolLM3 template with
    `<|im_end|>` as eos (TRL then updates the model config and generation config too)."""
    if plan.preset is not None:
        write_preset(args, plan.preset)
    if getattr(args, "smol_cpu_threads", None):
        import torch

        torch.set_num_threads(int(args.smol_cpu_threads))
    if plan.chat_template is not None and tokenizer is not None:
        apply_smollm3_template(tokenizer)
        if args.eos_token is None:
            args.eos_token = END_OF_TURN
