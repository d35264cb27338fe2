"""What a memory preset decided: the rows of its start-up table and the result handed to the trainer.

```python
result = plan_memory_preset("auto", args, model_name="HuggingFaceTB/SmolLM3-3B-Base")
Console().print(result.table())  # every change and conflict, with the reason, and the estimate's verdict
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .estimate import MemoryEstimate
from .hardware import GIB, HardwareInfo
from .tiers import next_smaller_tier

HEADROOM = 0.10  # verdict "fits" needs the estimate at or under 90% of the budget


@dataclass
class PresetRow:
    """One line of the start-up table: what the preset wanted for a setting and what the run uses."""

    setting: str
    preset_value: Any
    value: Any
    status: str  # "changed", "kept: explicit", "breaks the budget", "unavailable", "info"
    reason: str = ""


@dataclass
class PresetResult:
    """What a preset decided. `peft_config` / `quantization_config` are what the trainer should use."""

    tier: str
    requested: str
    hardware: HardwareInfo
    method: str
    rows: list[PresetRow]
    changes: dict[str, Any]
    peft_config: Any
    quantization_config: Any
    estimate: MemoryEstimate | None
    budget: int
    fits: bool
    culprits: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        return self.estimate.fraction_of(self.budget) if self.estimate else None

    @property
    def verdict(self) -> str:
        if self.estimate is None:
            return "unknown: the model's shape could not be read"
        fraction = self.fraction
        if fraction > 1:
            smaller = self.suggestion()
            return f"does not fit ({fraction:.0%} of {self.budget / GIB:.1f} GiB){smaller}"
        headroom = 1 - fraction
        if headroom < HEADROOM:
            return f"fits, tight: {headroom:.0%} headroom of {self.budget / GIB:.1f} GiB"
        return f"fits with {headroom:.0%} headroom of {self.budget / GIB:.1f} GiB"

    def suggestion(self) -> str:
        if self.culprits:
            return f": the explicit {', '.join(self.culprits)} break the budget; unset them or lower them"
        smaller = next_smaller_tier(self.tier)
        return f": try memory_preset={smaller}" if smaller else ": lower max_length or the batch size"

    def table(self, title: str | None = None):
        from rich.table import Table

        title = title or f"trl-smol memory preset `{self.tier}`" + (
            f" (auto on {self.hardware.name})" if self.requested == "auto" else ""
        )
        table = Table(title=title, caption=f"estimate: {self.verdict}")
        table.add_column("setting", no_wrap=True)
        table.add_column("preset", overflow="fold")
        table.add_column("used", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("why")
        styles = {"changed": "green", "kept: explicit": "yellow", "breaks the budget": "bold red"}
        for row in self.rows:
            style = styles.get(row.status, "")
            status = f"[{style}]{row.status}[/{style}]" if style else row.status
            table.add_row(row.setting, _show(row.preset_value), _show(row.value), status, row.reason)
        return table


def _show(value: Any) -> str:
    value = getattr(value, "value", value)
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)
