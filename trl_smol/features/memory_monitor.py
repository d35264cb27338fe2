"""Peak memory logged at each logging step and compared with the preset's estimate (the `memory` callback).

```yaml
callbacks: [memory]   # on by itself under any memory_preset
```

The callback ([`trl_smol.memory.MemoryMonitorCallback`]) works in any `transformers.Trainer`; this module decides
whether the run has it and hands it the estimate of the run's memory preset.
"""

from __future__ import annotations

from typing import Any

from ..memory import MemoryMonitorCallback
from .base import Decision, Feature, RunContext, Source


class MemoryMonitor(Feature):
    name = "memory_monitor"

    def decide(self, context: RunContext) -> Decision:
        if "memory" in (context.value("callbacks") or ()):
            return Decision(self.name, Source.USER, True, "callbacks")
        if context.preset is not None:
            return Decision(self.name, Source.PRESET, True, f"memory preset {context.preset_tier}")
        return Decision(self.name, Source.DEFAULT, False)

    def describe(self, decision: Decision) -> str | None:
        return None  # listed under `callbacks`

    def callbacks(self, decision: Decision, plan: Any, args: Any, prepared: Any = None) -> list:
        return [MemoryMonitorCallback(estimate_bytes=plan.estimate_bytes)] if decision.on else []
