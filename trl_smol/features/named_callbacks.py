"""Callbacks by name (`callbacks`): any installed package's `transformers.TrainerCallback` registered under the
`trl_smol.callbacks` entry-point group ([`trl_smol.callbacks`]).

```yaml
callbacks: [samples, memory, my_cb]   # `trl-smol callbacks` lists what is installed
```

`samples` and `memory` are the plugin's own (built by their features with the run's settings); every other name is
built from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..callbacks import load_callback
from .base import Decision, Feature, RunContext, Source

BUILT_IN = ("samples", "memory")  # built by the samples and memory-monitor features


@dataclass
class CallbackArguments:
    """
    callbacks (`list[str]`, *optional*):
        Names of callbacks from the `trl_smol.callbacks` entry-point group to add to the trainer, e.g.
        `["samples", "memory"]`. Run `trl-smol callbacks` to list what is installed.
    """

    callbacks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Callbacks to add, by name from the `trl_smol.callbacks` entry-point group (e.g. samples memory). "
            "`trl-smol callbacks` lists the installed ones."
        },
    )


class NamedCallbacks(Feature):
    name = "callbacks"

    def check_arguments(self, args: Any) -> None:
        if isinstance(args.callbacks, str):  # `--callbacks samples` from a shell, or a scalar in YAML
            args.callbacks = [args.callbacks]

    def decide(self, context: RunContext) -> Decision:
        names = tuple(context.value("callbacks") or ())
        return Decision(self.name, Source.USER if names else Source.DEFAULT, names)

    def describe(self, decision: Decision) -> str | None:
        return None  # the plan lists every callback under `callbacks`

    def callbacks(self, decision: Decision, plan: Any, args: Any, prepared: Any = None) -> list:
        return [load_callback(name, args) for name in decision.value if name not in BUILT_IN]
