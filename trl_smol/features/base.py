"""The interface every plugin feature implements, and the typed decision it makes for one run.

A feature is one module of `trl_smol.features`: the config fields it owns (a dataclass that `SmolSFTConfig` inherits),
how it decides from a [`RunContext`] (what the user set, the hardware, the model, the data, the memory preset) into a
[`Decision`], the row it adds to the memory preset's table, and what it installs: into the training arguments and
the tokenizer before TRL's constructor (`prepare`), as callbacks (`callbacks`), and into the trainer after it
(`install`). In the spirit of transformers' `TrainerCallback` and Axolotl's `BasePlugin`, every method has a default
that does nothing, so a feature implements only what it needs.

```python
from trl_smol.features import FEATURES, RunContext

decisions = [feature.decide(context) for feature in FEATURES]   # what `plan_run` does
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from ..settings import UserSettings
from .values import RecipeValueError, Rule, check_values

if TYPE_CHECKING:
    from ..memory import HardwareInfo, PresetResult
    from ..memory.preset_result import PresetRow
    from ..memory.sharding import Sharding


class Source(Enum):
    """Who decided a feature's value in this run."""

    USER = "user"  # the recipe, the command line or the config's constructor set the feature's setting
    PRESET = "preset"  # the memory preset turned it on
    DEFAULT = "default"  # the setting's default, or the plugin's rule for a SmolLM3 model (chat template, precision)
    WITHDRAWN = "withdrawn"  # the preset proposed it, but it cannot apply to this run (the reason says why)


class Entry(Enum):
    """How the run was entered."""

    TRL_SFT = "trl sft"
    PYTHON = "python"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Decision:
    """What one feature does in this run: its value, who decided it and why (the reason is for display only)."""

    feature: str
    source: Source
    value: Any = None
    reason: str | None = None
    warning: str | None = None  # logged at start-up and shown by `trl-smol doctor`
    proposal: tuple[Any, str] | None = None  # what a memory preset proposed, and why (its table row)

    @property
    def on(self) -> bool:
        return self.source is not Source.WITHDRAWN and bool(self.value)


class FeatureError(ValueError):
    """A setting the user gave explicitly cannot apply to this run; raised before the model loads."""


def check_choice(args: Any, setting: str, choices: tuple[str, ...]) -> None:
    """Raise a [`RecipeValueError`] naming `setting` and the valid values when its value is not one of `choices`."""
    value = getattr(args, setting)
    if value not in choices:
        raise RecipeValueError(setting, value, f"one of {', '.join(choices)}")


@dataclass(frozen=True)
class RunContext:
    """Everything a feature decides from, gathered once where the run is entered (`plan_run`).

    `model` is a loaded model when the caller passed one; `model_name` the name or path to load. `custom_collator`,
    `vision` and `custom_loss`: the caller passes its own data collator, an image dataset, a `compute_loss_func`.
    `preset` and `method` are filled in once the memory preset has been planned.
    """

    args: Any
    user: UserSettings
    entry: Entry = Entry.PYTHON
    hardware: HardwareInfo | None = None
    model: Any = None
    model_name: str | None = None
    tokenizer: Any = None
    conversational: bool = False
    custom_collator: bool = False
    vision: bool = False
    custom_loss: bool = False
    peft_config: Any = None
    quantization_config: Any = None
    sharding: Sharding | None = None  # what the engine shards (ZeRO / FSDP): the preset plans per process
    preset: PresetResult | None = None
    method: str = "full"
    environ: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def explicit(self) -> frozenset[str]:
        return self.user.explicit

    def is_set(self, setting: str) -> bool:
        return setting in self.user.explicit

    def value(self, setting: str, default: Any = None) -> Any:
        return getattr(self.args, setting, default)

    @property
    def attention(self) -> str | None:
        """The attention implementation the model runs with (None: transformers' default, `sdpa`)."""
        if self.model is not None:
            return getattr(self.model.config, "_attn_implementation", None)
        init_kwargs = getattr(self.args, "model_init_kwargs", None) or {}
        if self.preset is not None and "model_init_kwargs" in self.preset.changes:
            init_kwargs = self.preset.changes["model_init_kwargs"]
        return init_kwargs.get("attn_implementation")

    @property
    def preset_tier(self) -> str | None:
        return self.preset.tier if self.preset is not None else None


class Feature:
    """One plugin feature. Subclasses set `name` and override what they need; see the module docstring."""

    name: ClassVar[str]
    banner_key: ClassVar[str | None] = None  # the key under which the banner and the model card list the feature
    rules: ClassVar[dict[str, Rule]] = {}  # the values its own fields accept (features/values.py)

    # --- the config fields it owns (a dataclass mixed into SmolSFTConfig) ----------------------------------------
    def resolve_defaults(self, args: Any) -> None:
        """Before TRL's `__post_init__`: fill defaults that depend on the machine (e.g. the precision)."""

    def check_arguments(self, args: Any) -> None:
        """After TRL's `__post_init__`: normalise and validate the feature's own fields (raise `ValueError`). Also run
        by the recipe parser and `trl-smol doctor` on the recipe's values, before any dataclass is built. The default
        checks `rules`; a feature that overrides it calls `super().check_arguments(args)`."""
        check_values(args, self.rules)

    # --- planning --------------------------------------------------------------------------------------------------
    def decide(self, context: RunContext) -> Decision:
        raise NotImplementedError

    def preset_row(self, decision: Decision, context: RunContext) -> PresetRow | None:
        """The feature's row in the memory preset's table, where a preset is active and proposed something."""
        return None

    def describe(self, decision: Decision) -> str | None:
        """The feature's value in the banner and the model card, or None to leave it out."""
        if not decision.on:
            return None
        return f"{decision.value} ({decision.reason})" if decision.reason else str(decision.value)

    # --- installing ------------------------------------------------------------------------------------------------
    def prepare(self, decision: Decision, plan: Any, args: Any, tokenizer: Any) -> Any:
        """Before TRL's constructor: write the decision into the training arguments / the tokenizer. What it returns
        is kept in `trainer.installed` and handed to `callbacks`."""
        return None

    def callbacks(self, decision: Decision, plan: Any, args: Any, prepared: Any = None) -> list:
        """`TrainerCallback`s the feature adds to the trainer (`prepared`: what `prepare` returned)."""
        return []

    def install(self, decision: Decision, trainer: Any) -> Any:
        """After TRL's constructor: install into the trainer; the return value is kept in `trainer.installed`."""
        return None
