"""The run plan: every feature's decision for one run, made once before the model loads.

A [`RunPlan`] holds what the user set (the recipe, the command line or the config's constructor), the memory preset
and what it changed, the training method, and one typed [`Decision`] per feature of `trl_smol.features` (its value,
who decided it: user, preset, default or withdrawn, and why). `SmolSFTTrainer` builds it with [`plan_run`] and hands
it to the callbacks, the banner, the out-of-memory handler and the model card; `trl-smol doctor` builds the same plan
from a recipe without loading a model.

```python
from trl_smol.plan import plan_run

plan = plan_run(args, model_name="HuggingFaceTB/SmolLM3-3B-Base", tokenizer=tokenizer, conversational=True)
plan.method                          # "qlora" (chosen by the 8gb preset), "lora", "full", or a PEFT type
plan["padding_free"].source          # Source.PRESET: who decided, as an enum
plan.preset_rows()                   # every change and conflict of the preset and its levers, with the reason
plan.banner()                        # the one line printed at start-up
```

Nothing here changes the training arguments or the tokenizer: [`apply_run_plan`] does, in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from . import __version__
from .features import FEATURES, MEMORY_PRESET, Decision, Entry, RunContext
from .features.base import Feature
from .launch import entered_through_trl_sft, new_run_id
from .memory import PresetResult
from .memory.hardware import HardwareInfo
from .memory.planner import write_preset
from .memory.preset_result import PresetRow
from .memory.sharding import Sharding, sharding_from_environment
from .settings import UserSettings, explicit_settings


@dataclass(frozen=True)
class RunPlan:
    """What one run does beyond stock TRL, and why. Built by [`plan_run`]; read-only afterwards."""

    entry: Entry
    run_id: str  # tells this run's samples, trackio config and model card apart from other runs'
    user: UserSettings
    model_name: str | None
    method: str  # "full", "lora", "qlora" or the PEFT type, after the preset
    preset: PresetResult | None
    decisions: tuple[Decision, ...]
    context: RunContext = field(compare=False, repr=False)
    peft_config: Any = field(default=None, compare=False)
    quantization_config: Any = field(default=None, compare=False)

    def __getitem__(self, feature: str) -> Decision:
        for decision in self.decisions:
            if decision.feature == feature:
                return decision
        raise KeyError(f"no feature named {feature!r}; known: {', '.join(d.feature for d in self.decisions)}")

    def is_on(self, feature: str) -> bool:
        return self[feature].on

    @property
    def explicit(self) -> frozenset[str]:
        return self.user.explicit

    @property
    def precision(self) -> str:
        return self["precision"].value

    @property
    def smollm3_template(self) -> bool:
        """The plugin applies its SmolLM3 template in this run (then `today` is fixed too)."""
        return self.is_on("chat_template")

    @property
    def warnings(self) -> list[str]:
        return [decision.warning for decision in self.decisions if decision.warning]

    @property
    def estimate_bytes(self) -> int | None:
        estimate = self.preset.estimate if self.preset is not None else None
        return estimate.total_bytes if estimate is not None else None

    @property
    def callbacks(self) -> tuple[str, ...]:
        """The callbacks this run adds, by name: the user's list, with `samples` first and `memory` last when their
        features are on."""
        names = list(self["callbacks"].value)
        if self.is_on("samples") and "samples" not in names:
            names.insert(0, "samples")
        if self.is_on("memory_monitor") and "memory" not in names:
            names.append("memory")
        return tuple(names)

    def template_defaults(self, args: Any) -> dict[str, Any]:
        """The chat-template defaults the data and the samples are rendered with in this run."""
        return args.template_defaults(self.smollm3_template)

    def features(self, engine: str | None = None) -> dict[str, str]:
        """The plugin's behaviours in this run, by name: what the banner and the model card list. `engine`: how the
        run is distributed, known once accelerate is up (`trl_smol.distributed.describe_engine`)."""
        described = [
            (feature_named(d.feature).banner_key, feature_named(d.feature).describe(d)) for d in self.decisions
        ]
        shown = {key: value for key, value in described if key and value}
        if engine:
            precision = {"precision": shown.pop("precision")} if "precision" in shown else {}
            shown = {**precision, "distributed": engine, **shown}
        if self.callbacks:
            shown["callbacks"] = ",".join(self.callbacks)
        return shown

    def banner(self, engine: str | None = None) -> str:
        features = ", ".join(f"{key}={value}" for key, value in self.features(engine).items()) or "no features enabled"
        return f"trl-smol {__version__} active ({self.entry}, run {self.run_id}): {features}"

    def preset_rows(self) -> list[PresetRow]:
        """The memory preset's rows and those of the features' levers (empty without a preset)."""
        if self.preset is None:
            return []
        rows = [feature_named(d.feature).preset_row(d, self.context) for d in self.decisions]
        return list(self.preset.rows) + [row for row in rows if row is not None]

    def preset_table(self, title: str | None = None):
        return self.preset.table(title, rows=self.preset_rows()) if self.preset is not None else None


def feature_named(name: str) -> Feature:
    """The registered feature called `name`."""
    return next(feature for feature in FEATURES if feature.name == name)


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
    sharding: Sharding | None = None,
) -> RunPlan:
    """Resolve the run plan of `args` (a `SmolSFTConfig`, or recipe values for `trl-smol doctor`).

    `model` is a loaded model when the caller passed one, `model_name` the name or path to load. `tokenizer` and
    `conversational` decide the chat template (only chat data is templated). `explicit` overrides the settings the
    user set (default: [`trl_smol.settings.explicit_settings`]). `custom_collator` / `vision` / `custom_loss`: the
    caller passes its own data collator / an image dataset / a `compute_loss_func`, where some levers cannot apply.
    `sharding`: what the engine shards (default: what `accelerate launch` told this process), so that the preset plans
    the memory of each process.
    Raises what the preset planner raises (an unknown preset, a GPU tier without a GPU, a model whose shape cannot be
    read) and [`trl_smol.features.FeatureError`] for an explicit setting that cannot apply.
    """
    user = user or getattr(args, "user_settings", None) or UserSettings()
    explicit = explicit_settings(args) if explicit is None else explicit
    if user.explicit != explicit:
        user = UserSettings(explicit, user.recipe_path, user.recipe)
    context = RunContext(
        args=args,
        user=user,
        entry=Entry.TRL_SFT if entered_through_trl_sft() else Entry.PYTHON,
        hardware=hardware,
        model=model,
        model_name=model_name,
        tokenizer=tokenizer,
        conversational=conversational,
        custom_collator=custom_collator,
        vision=vision,
        custom_loss=custom_loss,
        peft_config=peft_config,
        quantization_config=quantization_config,
        environ=dict(os.environ),
        sharding=sharding or sharding_from_environment(os.environ),
    )
    preset = MEMORY_PRESET.plan(context)
    if preset is not None:
        peft_config, quantization_config = preset.peft_config, preset.quantization_config
    context = replace(
        context,
        preset=preset,
        peft_config=peft_config,
        quantization_config=quantization_config,
        method=training_method(peft_config, quantization_config, model),
    )
    return RunPlan(
        entry=context.entry,
        run_id=new_run_id(),
        user=user,
        model_name=model_name,
        method=context.method,
        preset=preset,
        decisions=tuple(feature.decide(context) for feature in FEATURES),
        context=context,
        peft_config=peft_config,
        quantization_config=quantization_config,
    )


def apply_run_plan(plan: RunPlan, args: Any, tokenizer: Any = None) -> dict[str, Any]:
    """Carry out the plan before TRL sees the arguments and the tokenizer: the preset's changes (stopping when the
    estimate breaks the budget, see `trl_smol.memory.planner.write_preset`), then each feature's `prepare` (the
    SmolLM3 template, thread count, run guard, ...). Returns what the features prepared, by feature name."""
    if plan.preset is not None:
        write_preset(args, plan.preset)
    prepared = {}
    for decision in plan.decisions:
        result = feature_named(decision.feature).prepare(decision, plan, args, tokenizer)
        if result is not None:
            prepared[decision.feature] = result
    return prepared
