"""`SmolSFTConfig`: TRL's `SFTConfig` plus the fields of every plugin feature.

Every plugin field defaults to a value that leaves stock TRL behaviour unchanged, so a script that swaps
`SFTConfig` for `SmolSFTConfig` trains exactly as before until it asks for a plugin feature. Each feature owns its
fields (a dataclass in its module under `trl_smol.features`); this class inherits them all.

```python
from trl_smol import SmolSFTConfig

args = SmolSFTConfig(
    output_dir="smollm3-sft",
    memory_preset="auto",                      # fit the run to this machine
    sample_prompts=["What is 2+2?"],           # print and log samples during training
    sample_every_n_steps=50,
    chat_template_kwargs={"enable_thinking": False},
)
```
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from trl.trainer.sft_config import SFTConfig

from .features import ARGUMENTS, FEATURES
from .features.base import Feature
from .features.chat_template import ChatTemplateArguments
from .features.cpu_threads import CpuThreadsArguments
from .features.invalid_rows import InvalidRowsArguments
from .features.labelled_scoring import LabelledScoringArguments
from .features.memory_preset import MemoryPresetArguments
from .features.named_callbacks import CallbackArguments
from .features.padding_free import PaddingFreeArguments
from .features.run_safety import RunSafetyArguments
from .features.samples import SampleArguments
from .features.values import check_values, trl_rules
from .settings import UserSettings, differing_from_defaults

__all__ = ["SmolSFTConfig", "UserSettings"]


# The bases in reverse: a dataclass lists the fields of its last base first, so TRL's come first (`output_dir` stays
# the first positional argument) and then the features' in ARGUMENTS order.
@dataclass
class SmolSFTConfig(
    CallbackArguments,
    RunSafetyArguments,
    LabelledScoringArguments,
    CpuThreadsArguments,
    PaddingFreeArguments,
    MemoryPresetArguments,
    SampleArguments,
    InvalidRowsArguments,
    ChatTemplateArguments,
    SFTConfig,
):
    _VALID_DICT_FIELDS = SFTConfig._VALID_DICT_FIELDS + ["chat_template_kwargs"]

    user_settings: UserSettings = field(
        default_factory=UserSettings,
        init=False,
        repr=False,
        compare=False,
        metadata={"help": "Recorded, not set: the settings the user set explicitly (see UserSettings)."},
    )

    def __post_init__(self):
        # Before any default is resolved: what differs from the declared defaults is what the caller set.
        self.user_settings = UserSettings(explicit=frozenset(differing_from_defaults(self)))
        for feature in FEATURES:
            feature.resolve_defaults(self)  # e.g. the precision where TRL's bf16 default would stop the run
        # TRL's values the plugin relies on, checked as the recipe parser does: `max_length=-1` would train with one
        # token cut from every row, an unknown `optim` fail in transformers with a traceback.
        check_values(self, trl_rules())
        super().__post_init__()
        for feature in FEATURES:
            feature.check_arguments(self)


def _docstring(features: tuple[Feature, ...]) -> str:
    sections = "\n".join(
        f"    > {arguments.__name__} ({arguments.__module__})\n\n"
        + "\n".join(f"    {line}" if line.strip() else "" for line in inspect.cleandoc(arguments.__doc__).splitlines())
        + "\n"
        for arguments in ARGUMENTS
    )
    return (
        "Configuration for [`SmolSFTTrainer`]: every parameter of [`trl.SFTConfig`] plus the plugin features' own.\n\n"
        f"Parameters:\n{sections}\n"
        "    > Record (not an argument)\n\n"
        "    user_settings ([`UserSettings`]):\n"
        "        The settings the user set explicitly and the recipe file, recorded at construction (and by the\n"
        "        recipe parser for `trl sft`). Presets and the run plan never change what is listed there. Not\n"
        "        serialised.\n"
    )


SmolSFTConfig.__doc__ = _docstring(FEATURES)
