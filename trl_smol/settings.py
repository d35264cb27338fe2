"""What the user set: recorded once, where the run is entered, and read by every feature's decision.

```python
from trl_smol.settings import UserSettings, explicit_settings

explicit_settings(args)  # frozenset of the settings the user set (the recipe's keys for `trl sft`)
```

The recipe parser records [`UserSettings`] for `trl sft` (keys of the recipe and of the command line, even those set
to their default value); a `SmolSFTConfig` built in Python records the fields whose value differs from the field's
default; other training arguments (TRL's `SFTConfig`, a plain `TrainingArguments`) are compared with a default
config of their own class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class UserSettings:
    """What the user asked for: the settings they set and, for `trl sft`, the recipe file they came from."""

    explicit: frozenset[str] = frozenset()
    recipe_path: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)


def default_config(config_class: type, **values: Any) -> Any:
    """Build a config without disturbing a run in progress.

    Building `TrainingArguments` resets accelerate's process-wide state (`AcceleratorState._reset_state`), which
    breaks a distributed run that is already training; the state is saved and restored around the construction
    (a listed touch point: docs/architecture.md).
    """
    from accelerate.state import AcceleratorState, GradientState, PartialState

    saved = [(state, dict(state._shared_state)) for state in (PartialState, AcceleratorState, GradientState)]
    try:
        return config_class(**values)
    finally:
        for state, shared in saved:
            state._shared_state.clear()
            state._shared_state.update(shared)


def explicit_settings(args: Any) -> frozenset[str]:
    """The settings the user set: the record of a `SmolSFTConfig`, or for other training arguments (TRL's
    `SFTConfig`, a plain `TrainingArguments`) the fields that differ from a default config of their class, plus the
    precision, which such an object has already resolved."""
    settings = getattr(args, "user_settings", None)
    if isinstance(settings, UserSettings):
        return settings.explicit
    # use_cpu too: transformers refuses bf16 on a machine without bf16 unless use_cpu is set.
    defaults = default_config(
        type(args), output_dir=args.output_dir, bf16=args.bf16, fp16=args.fp16, use_cpu=args.use_cpu
    )
    names = {f.name for f in fields(args) if f.init and getattr(args, f.name) != getattr(defaults, f.name)}
    if args.output_dir is not None:
        names.add("output_dir")
    return frozenset(names | {"bf16", "fp16"})


def differing_from_defaults(config: Any) -> set[str]:
    """The init fields of a dataclass whose value differs from the field's declared default."""
    names = set()
    for f in fields(config):
        if not f.init:
            continue
        default = (
            f.default
            if f.default is not MISSING
            else f.default_factory()
            if f.default_factory is not MISSING
            else MISSING
        )
        if default is MISSING or getattr(config, f.name) != default:
            names.add(f.name)
    return names
