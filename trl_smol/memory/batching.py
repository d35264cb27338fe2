"""How a memory preset splits the effective batch: the largest micro-batch that fits, then checkpointing off if free.

```python
from trl_smol.memory.batching import choose_batch

choice = choose_batch(8, fits=lambda micro, checkpointing, margin: micro <= 4 or checkpointing)
choice.micro_batch, choice.accumulation, choice.gradient_checkpointing   # (4, 2, False)
```

A preset keeps the number of rows per optimizer step (the recipe's, or TRL's default of 8 x 1), so the optimisation
is the one the recipe describes; only how a step is computed changes. Larger micro-batches fill the device better
and cost fewer accumulation passes (on an H200, SmolLM3-3B LoRA at 2048 tokens ran at 8,964 tokens/s with micro-batch
2 x 8 and 14,548 with 8 x 1: docs/benchmarks.md), so the micro-batch is chosen first; gradient checkpointing (which
recomputes every layer's forward in the backward, about a third more compute) is turned off only when the run fits
without it at that micro-batch, with a wider margin ([`NO_CHECKPOINTING_MARGIN`]) because that estimate has only
been checked on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Without checkpointing, activations dominate and the estimate has only been measured on CPU: ask for 25% headroom.
NO_CHECKPOINTING_MARGIN = 0.25
CHECKPOINTING_MARGIN = 0.10  # the preset's usual headroom (HEADROOM in preset_result.py)


@dataclass(frozen=True)
class BatchChoice:
    """A split of the effective batch, and why."""

    micro_batch: int
    accumulation: int
    gradient_checkpointing: bool
    fits: bool  # False: not even the smallest micro-batch fits the budget

    @property
    def effective(self) -> int:
        return self.micro_batch * self.accumulation


def divisors(number: int) -> list[int]:
    """The divisors of `number`, largest first: micro-batches that split it exactly."""
    return [candidate for candidate in range(number, 0, -1) if number % candidate == 0]


def choose_batch(
    effective: int,
    *,
    fits: Callable[[int, bool, float], bool],
    micro_batch: int | None = None,
    gradient_checkpointing: bool | None = None,
) -> BatchChoice:
    """Split `effective` rows per step into micro-batch x accumulation.

    `fits(micro, checkpointing, margin)` says whether the run's estimate stays `margin` under the budget. A given
    `micro_batch` or `gradient_checkpointing` (set by the user) is kept; the rest is chosen: the largest micro-batch
    dividing `effective` that fits with checkpointing on, then checkpointing off when that micro-batch also fits
    without it (with [`NO_CHECKPOINTING_MARGIN`]).
    """
    candidates = [micro_batch] if micro_batch else divisors(max(1, effective))
    checkpointing = True if gradient_checkpointing is None else gradient_checkpointing
    margin = NO_CHECKPOINTING_MARGIN if not checkpointing else CHECKPOINTING_MARGIN
    chosen = next((micro for micro in candidates if fits(micro, checkpointing, margin)), None)
    fitting = chosen is not None
    chosen = chosen or candidates[-1]
    if gradient_checkpointing is None and fitting and fits(chosen, False, NO_CHECKPOINTING_MARGIN):
        checkpointing = False
    return BatchChoice(chosen, max(1, effective // chosen), checkpointing, fitting)
