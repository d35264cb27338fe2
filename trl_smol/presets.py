"""Deprecated alias of `trl_smol.memory` (moved in 0.2.0, removed in 0.3.0)."""

from trl_smol._deprecated import moved

__getattr__ = moved(
    __name__,
    "trl_smol.memory",
    "trl_smol.memory.tiers",
    "trl_smol.memory.planner",
    "trl_smol.memory.run_settings",
    "trl_smol.memory.oom",
)
