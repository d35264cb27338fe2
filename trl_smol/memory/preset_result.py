"""What a memory preset decided: the rows of its start-up table and the result handed to the trainer.

```python
result = plan_memory_preset("auto", args, model_name="HuggingFaceTB/SmolLM3-3B-Base")
Console().print(result.table())  # every change and conflict, with the reason, and the estimate's verdict
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .batching import BatchChoice
from .estimate import MemoryEstimate
from .hardware import GIB, HardwareInfo
from .sharding import Sharding
from .speed import StepTimeModel
from .tiers import Preset, next_smaller_tier

HEADROOM = 0.10  # verdict "fits" needs the estimate at or under 90% of the budget


class RowStatus(str, Enum):
    """What became of one setting a preset wanted (the `status` column of its table)."""

    CHANGED = "changed"  # the preset set it
    KEPT_EXPLICIT = "kept: explicit"  # the user set it; the preset left it
    BREAKS_BUDGET = "breaks the budget"  # the user set it, and it makes the estimate exceed the budget
    UNAVAILABLE = "unavailable"  # the preset wanted it, but it cannot apply here (the reason says why)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass
class PresetRow:
    """One line of the start-up table: what the preset wanted for a setting and what the run uses."""

    setting: str
    preset_value: Any
    value: Any
    status: RowStatus
    reason: str = ""


@dataclass
class PresetResult:
    """What a preset decided. `peft_config` / `quantization_config` are what the trainer should use."""

    tier: str  # the tier planned with (a key of TIERS)
    requested: Preset
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
    batch: BatchChoice | None = None  # the split of the step and the candidates it was chosen from
    speed: StepTimeModel | None = None  # what ranked them
    sharding: Sharding | None = None  # the engine the per-process estimate is for

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

    def table(self, title: str | None = None, rows: list[PresetRow] | None = None):
        """The start-up table: `rows` (default: the preset's own; the run plan adds its features' rows)."""
        from rich.table import Table

        title = title or f"trl-smol memory preset `{self.tier}`" + (
            f" (auto on {self.hardware.name})" if self.requested is Preset.AUTO else ""
        )
        table = Table(title=title, caption=f"estimate: {self.verdict}")
        table.add_column("setting", no_wrap=True)
        table.add_column("preset", overflow="fold")
        table.add_column("used", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("why")
        styles = {RowStatus.CHANGED: "green", RowStatus.KEPT_EXPLICIT: "yellow", RowStatus.BREAKS_BUDGET: "bold red"}
        for row in self.rows if rows is None else rows:
            style = styles.get(row.status, "")
            status = f"[{style}]{row.status.value}[/{style}]" if style else row.status.value
            table.add_row(row.setting, _show(row.preset_value), _show(row.value), status, row.reason)
        return table


def plans_table(result: PresetResult, limit: int = 6):
    """The plans the preset weighed, fastest fitting first: the chosen one, the runners-up with their estimated step
    time and peak, and why each lost (`trl-smol doctor`)."""
    from rich.table import Table

    batch = result.batch
    speed = f"; step times by the step-time model ({result.speed.calibration})" if result.speed else ""
    table = Table(title="Plans weighed (rows per step kept)", caption=f"estimates{speed}")
    for column in ("micro-batch x accumulation", "checkpointing", "est. peak", "est. s/step", ""):
        table.add_column(column)
    for candidate in batch.candidates[:limit] if batch is not None else ():
        peak = f"{candidate.peak_bytes / GIB:.1f} GiB" if candidate.peak_bytes else "-"
        seconds = f"{candidate.seconds:.2f}" if candidate.seconds is not None else "-"
        chosen = (candidate.micro_batch, candidate.gradient_checkpointing) == (
            batch.micro_batch,
            batch.gradient_checkpointing,
        )
        why = "[green]chosen[/green]" if chosen else ("slower" if candidate.fits else "does not fit with its margin")
        table.add_row(
            f"{candidate.micro_batch} x {candidate.accumulation}",
            "on" if candidate.gradient_checkpointing else "off",
            peak,
            seconds,
            why,
        )
    return table


def _show(value: Any) -> str:
    value = getattr(value, "value", value)
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)
