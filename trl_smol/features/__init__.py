"""The plugin's features, one module each, and the one list that registers them.

Every feature implements the interface of [`Feature`] (`base.py`): it owns its config fields (a dataclass that
`SmolSFTConfig` inherits), decides from a [`RunContext`] into a typed [`Decision`], may add a row to the memory
preset's table, and installs itself before and after TRL's constructor. `plan_run` (trl_smol/plan.py) asks each one
in [`FEATURES`] order, and `SmolSFTTrainer` installs them in the same order.

Adding a feature: write `features/<name>.py` with its arguments dataclass and its `Feature` subclass, then register it
here (the instance in `FEATURES`, the arguments in `ARGUMENTS`). docs/architecture.md walks through one.
"""

from .attention import Attention
from .base import Decision, Entry, Feature, FeatureError, RunContext, Source
from .chat_template import ChatTemplate, ChatTemplateArguments
from .cpu_threads import CpuThreads, CpuThreadsArguments
from .invalid_rows import InvalidRows, InvalidRowsArguments
from .labelled_scoring import LabelledScoringArguments, LabelledScoringFeature
from .lever import PresetLever
from .memory_monitor import MemoryMonitor
from .memory_preset import MemoryPreset, MemoryPresetArguments
from .named_callbacks import CallbackArguments, NamedCallbacks
from .padding_free import PaddingFree, PaddingFreeArguments
from .precision import Precision
from .run_safety import RunSafety, RunSafetyArguments
from .samples import SampleArguments, Samples

MEMORY_PRESET = MemoryPreset()

# The order is the banner's and the model card's, and the order of installation.
FEATURES: tuple[Feature, ...] = (
    Precision(),
    MEMORY_PRESET,
    Attention(),
    PaddingFree(),
    CpuThreads(),
    LabelledScoringFeature(),
    ChatTemplate(),
    InvalidRows(),
    Samples(),
    MemoryMonitor(),
    NamedCallbacks(),
    RunSafety(),
)

# The config fields each feature owns, in the order `trl sft --help` lists them (SmolSFTConfig inherits them all).
ARGUMENTS: tuple[type, ...] = (
    ChatTemplateArguments,
    InvalidRowsArguments,
    SampleArguments,
    MemoryPresetArguments,
    PaddingFreeArguments,
    CpuThreadsArguments,
    LabelledScoringArguments,
    RunSafetyArguments,
    CallbackArguments,
)

__all__ = [
    "ARGUMENTS",
    "FEATURES",
    "MEMORY_PRESET",
    "Decision",
    "Entry",
    "Feature",
    "FeatureError",
    "PresetLever",
    "RunContext",
    "Source",
]
