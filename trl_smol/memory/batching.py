"""How a memory preset splits the effective batch: the fastest plan that fits.

```python
from trl_smol.memory.batching import choose_batch

choice = choose_batch(8, peak=lambda micro, checkpointing: micro * 2**30 * (1 if checkpointing else 3),
                      budget=16 * 2**30, seconds=lambda micro, accumulation, checkpointing: accumulation + micro)
choice.micro_batch, choice.accumulation, choice.gradient_checkpointing   # the fastest candidate that fits
choice.candidates                                                         # every candidate: seconds, peak, fits
```

A preset keeps the number of rows per optimizer step (the recipe's, or TRL's default of 8 x 1), so the optimisation
is the one the recipe describes; only how a step is computed changes. Every split of those rows (micro-batch x
accumulation) with gradient checkpointing on and off is a candidate; the step-time model (`memory/speed.py`) ranks the
ones whose estimate fits the budget, and the fastest wins: fewer, larger micro-steps pay less fixed cost per step,
while checkpointing recomputes every layer's forward (about a third more compute). The estimate without
checkpointing has only been checked on a CPU, so it must leave a wider margin ([`NO_CHECKPOINTING_MARGIN`]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Without checkpointing, activations dominate and the estimate has only been measured on CPU: ask for 25% headroom.
NO_CHECKPOINTING_MARGIN = 0.25
CHECKPOINTING_MARGIN = 0.10  # the preset's usual headroom (HEADROOM in preset_result.py)


@dataclass(frozen=True)
class Candidate:
    """One way to compute a step: its estimated peak and seconds, and whether it fits with its margin."""

    micro_batch: int
    accumulation: int
    gradient_checkpointing: bool
    peak_bytes: int | None
    seconds: float | None
    fits: bool


@dataclass(frozen=True)
class BatchChoice:
    """A split of the effective batch, and the candidates it was chosen from (fastest fitting first)."""

    micro_batch: int
    accumulation: int
    gradient_checkpointing: bool
    fits: bool  # False: not even the smallest micro-batch fits the budget
    candidates: tuple[Candidate, ...] = ()
    seconds: float | None = None

    @property
    def effective(self) -> int:
        return self.micro_batch * self.accumulation


def divisors(number: int) -> list[int]:
    """The divisors of `number`, largest first: micro-batches that split it exactly."""
    return [candidate for candidate in range(number, 0, -1) if number % candidate == 0]


def choose_batch(
    effective: int,
    *,
    peak: Callable[[int, bool], int | None],
    budget: int,
    seconds: Callable[[int, int, bool], float] | None = None,
    micro_batch: int | None = None,
    gradient_checkpointing: bool | None = None,
) -> BatchChoice:
    """Split `effective` rows per step into micro-batch x accumulation, with checkpointing on or off.

    `peak(micro, checkpointing)` estimates the peak bytes (None: no estimate, then only the smallest plan with
    checkpointing counts as fitting), `seconds(micro, accumulation, checkpointing)` the step time (None: the largest
    micro-batch wins, checkpointing off when it fits). A given `micro_batch` or `gradient_checkpointing` (set by the
    user) is kept; the rest is chosen: the fastest candidate whose estimate stays under the budget by its margin.
    """
    micros = [micro_batch] if micro_batch else divisors(max(1, effective))
    checkpointings = [gradient_checkpointing] if gradient_checkpointing is not None else [False, True]
    candidates = []
    for micro in micros:
        for checkpointing in checkpointings:
            accumulation = max(1, effective // micro)
            estimate = peak(micro, checkpointing)
            margin = CHECKPOINTING_MARGIN if checkpointing else NO_CHECKPOINTING_MARGIN
            fits = estimate <= (1 - margin) * budget if estimate is not None else checkpointing and micro == micros[-1]
            time = seconds(micro, accumulation, checkpointing) if seconds is not None else None
            candidates.append(Candidate(micro, accumulation, checkpointing, estimate, time, fits))

    def rank(candidate: Candidate) -> tuple:
        # Fitting first; then the fastest (or, without a step-time model, the largest micro-batch, checkpointing off).
        time = candidate.seconds if candidate.seconds is not None else 0.0
        return (not candidate.fits, time, -candidate.micro_batch, candidate.gradient_checkpointing)

    ordered = tuple(sorted(candidates, key=rank))
    best = ordered[0]
    if not best.fits:  # nothing fits: the smallest micro-batch, checkpointing as the user said or on
        smallest = [c for c in candidates if c.micro_batch == micros[-1]]
        best = next((c for c in smallest if c.gradient_checkpointing), smallest[0])
    return BatchChoice(
        best.micro_batch, best.accumulation, best.gradient_checkpointing, best.fits, ordered, best.seconds
    )
