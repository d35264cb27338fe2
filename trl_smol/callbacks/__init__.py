"""Callbacks, and the registry that lets a recipe name them: `callbacks: [samples, memory, other_pkg_cb]`.

Any installed package can register a callback under the `trl_smol.callbacks` entry-point group:

```toml
[project.entry-points."trl_smol.callbacks"]
my_cb = "my_pkg.callbacks:MyCallback"
```

The registered object is a `transformers.TrainerCallback` subclass (or any callable returning one). If it has a
`from_args(args)` classmethod, it is built from the training arguments (so it can read the recipe's keys); otherwise
it is called with no arguments.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

ENTRY_POINT_GROUP = "trl_smol.callbacks"


class UnknownCallbackError(ValueError):
    """A callback name that no installed package registers."""


def registered_entry_points(group: str) -> dict[str, EntryPoint]:
    """Installed entry points of `group` by name (callbacks here; sample checks in `trl_smol.samples.checks`)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def registered_callbacks() -> dict[str, EntryPoint]:
    """Installed callbacks by name, from every package's `trl_smol.callbacks` entry points."""
    return registered_entry_points(ENTRY_POINT_GROUP)


def load_callback(name: str, args: Any = None):
    """Build the callback registered as `name`, from `args` when it supports `from_args`."""
    registry = registered_callbacks()
    if name not in registry:
        available = ", ".join(sorted(registry)) or "none (is trl-smol installed with `pip install`?)"
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UnknownCallbackError(
            f"Unknown callback `{name}` in `callbacks`.{hint} Available: {available}. Packages register callbacks "
            f"under the `{ENTRY_POINT_GROUP}` entry-point group."
        )
    factory = registry[name].load()
    if hasattr(factory, "from_args"):
        return factory.from_args(args)
    return factory()


def run_first(callback_handler: Any, *callback_types: type) -> None:
    """Move the callbacks of `callback_types` to the front of a trainer's `callback_handler`, in their order.

    Callbacks that add values to a log event's `logs` (such as `MemoryMonitorCallback`) must run before the
    reporters (trackio, wandb, ...) that send `logs`; transformers runs callbacks in list order and adds reporters
    first. In a plain `transformers.Trainer`: `run_first(trainer.callback_handler, MemoryMonitorCallback)`.
    """
    callbacks = callback_handler.callbacks
    first = [callback for callback in callbacks if isinstance(callback, callback_types)]
    callback_handler.callbacks = first + [callback for callback in callbacks if callback not in first]


__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownCallbackError",
    "load_callback",
    "registered_callbacks",
    "registered_entry_points",
    "run_first",
]
