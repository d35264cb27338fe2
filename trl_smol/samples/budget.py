"""`SampleBudget`: how many sample prompts a pass may generate so that sampling stays within a share of training time.

With `sample_budget: 0.05` and a few hundred prompts, the passes before and during training generate the leading
batches of the prompts that fit in 5% of the training time, the same prompts at every pass so that the pass rates
compare, and the pass after the last step generates every prompt (it is outside the budget, like an evaluation at the
end of training):

```python
budget = SampleBudget(share=0.05, total=256, batch=8)
budget.begin(step=0)
budget.plan(step=0, max_steps=1000, every_n_steps=100)    # Plan(count=8, ...): one batch, to time it
budget.spent(seconds=4.2, count=8, budgeted=True)
budget.plan(step=100, max_steps=1000, every_n_steps=100)  # as many batches as 5% of the projected time allows
```

What it counts: *training time* is the wall time since training began, sample passes excluded (steps, evaluations,
checkpoints); it is projected over the run from the steps done so far. *Sample time* is the wall time of the passes
before the last step (the start pass and the periodic and evaluation passes). A batch is one `generate` call on every
process (`per_device_eval_batch_size` prompts each); its time is the last pass's mean. The start pass cannot know
the step time yet: it generates one batch, which times a batch. Then each pass gets an equal part of what is left of
the budget for the passes still to come; the number of batches the first such pass takes is the most any later pass
takes, so the prompts stay the same unless the budget shrinks; when not one batch fits, the pass is skipped. An
evaluation's pass is never skipped (its metrics need one): it takes that same number of batches, at least one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


def check_share(share: float) -> None:
    """Raise `ValueError` unless `share` is a share of training time, strictly between 0 and 1."""
    if not 0 < share < 1:
        raise ValueError(f"sample_budget is a share of training time, such as 0.05 (5%); got {share}.")


def _batches(count: int) -> str:
    return f"{count} batch{'es' if count > 1 else ''}"


@dataclass(frozen=True)
class Plan:
    """What one pass generates: the first `count` prompts (`0`: skip the pass), and why, for the console."""

    count: int
    reason: str


@dataclass
class SampleBudget:
    """The sample budget of one run (see the module docstring). `share` is a fraction of training time, `total` the
    number of prompts, `batch` the prompts one `generate` call covers on all processes together."""

    share: float
    total: int
    batch: int
    began: float | None = None
    first_step: int = 0
    sample_seconds: float = 0.0  # every pass of this run so far: not training time
    budgeted_seconds: float = 0.0  # the passes before the last step: what the share bounds
    batch_seconds: float | None = None
    timing_seconds: float | None = None  # the pass that timed a batch
    most_batches: int | None = None

    def __post_init__(self) -> None:
        check_share(self.share)

    @property
    def total_batches(self) -> int:
        return math.ceil(self.total / self.batch)

    def begin(self, step: int, now: float | None = None) -> None:
        """Training began (or resumed) at `step`."""
        self.began = time.perf_counter() if now is None else now
        self.first_step = step

    def training_seconds(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        return max(0.0, now - (self.began if self.began is not None else now) - self.sample_seconds)

    def plan(
        self,
        step: int,
        max_steps: int,
        every_n_steps: int,
        *,
        evaluation: bool = False,
        last_budgeted: bool = False,
        now: float | None = None,
    ) -> Plan:
        """The prompts a budgeted pass at `step` may generate. `last_budgeted`: a periodic pass at `max_steps` is
        within the budget too (no final pass of every prompt: `sample_at_end` off)."""
        share = f"sample_budget {self.share:.0%}"
        if self.batch_seconds is None:
            count = min(self.batch, self.total)
            return Plan(count, f"one batch, which times a batch for {share}")
        steps_done = step - self.first_step
        training = self.training_seconds(now)
        if steps_done <= 0:  # a pass before any step of this run: nothing to project from yet
            batches = self.most_batches or 1
            return Plan(self._count(batches), f"{_batches(batches)}, before any step")
        projected = training * max(max_steps - self.first_step, steps_done) / steps_done
        left = self.share * projected - self.budgeted_seconds
        passes = self._passes_left(step, max_steps + 1 if last_budgeted else max_steps, every_n_steps)
        fits = math.floor(left / passes / self.batch_seconds)
        batches = min(max(fits, 0), self.most_batches or self.total_batches, self.total_batches)
        so_far = f"{self.budgeted_seconds:.1f}s of samples for ~{projected:.0f}s of training"
        if batches == 0:
            if not evaluation:
                return Plan(0, f"not one batch ({self.batch_seconds:.1f}s) fits {share} ({so_far})")
            batches = self.most_batches or 1
            return Plan(self._count(batches), f"{_batches(batches)} for the evaluation, over {share} ({so_far})")
        if self.most_batches is None:
            self.most_batches = batches
        return Plan(self._count(batches), f"{_batches(batches)} fit {share} ({so_far})")

    def spent(self, seconds: float, count: int, *, budgeted: bool) -> None:
        """A pass of `count` prompts took `seconds`; `budgeted` unless it was the pass after the last step."""
        self.sample_seconds += seconds
        if budgeted:
            self.budgeted_seconds += seconds
        if count:
            if self.batch_seconds is None and budgeted:
                self.timing_seconds = seconds
            self.batch_seconds = seconds / math.ceil(count / self.batch)

    def used(self, now: float | None = None) -> float | None:
        """The share of training time the budgeted passes took so far."""
        training = self.training_seconds(now)
        return self.budgeted_seconds / training if training > 0 else None

    def summary(self, final_seconds: float, now: float | None = None) -> str:
        """The line after the final pass: the share the passes before it took, and why when over the budget."""
        used = self.used(now)
        line = (
            f"Samples before the last step took {used:.1%} of the training time (sample_budget {self.share:.0%}); "
            f"the final pass {final_seconds:.1f}s"
            if used is not None
            else f"Samples: the final pass {final_seconds:.1f}s"
        )
        if used is not None and used > self.share and self.timing_seconds is not None:
            timing = f"{self.timing_seconds:.1f}s"
            line += f". Over the budget: the first pass's one batch, which times a batch, took {timing}"
        return line

    def _count(self, batches: int) -> int:
        return min(batches * self.batch, self.total)

    @staticmethod
    def _passes_left(step: int, end: int, every_n_steps: int) -> int:
        """Periodic passes from `step` (this one) to before step `end`, at least this one."""
        if every_n_steps <= 0 or step >= end:
            return 1
        return max(1, (end - 1) // every_n_steps - (step - 1) // every_n_steps)
