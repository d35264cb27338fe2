"""The figures of one sample pass, from its `samples.jsonl` rows: the one definition that the trackers
(`samples/pass_rate`, `samples/<check>`, `eval_samples_*`), the model card, `trl-smol samples` and the benchmarks
share.

```python
from trl_smol.samples.scores import pass_scores

scores = pass_scores(rows)   # rows of one step
scores.pass_rate             # share of the scored rows that passed; None when no row has checks
scores.metrics()             # {"pass_rate": ..., "<check>": mean, ...}, as the trackers log them; {} unscored
```

The rules:

- A row is scored when its `passed` is not null (the callback writes null for a prompt without checks). The pass rate
  is the share of the scored rows whose `passed` is true.
- A check's mean is over the rows that carry a result for it: true counts 1, false 0, a score as given. A check that
  raised was recorded as false, so it counts 0. A row without that check (or without checks) is not in its mean, and
  a value that is not true/false or a number (a hand-edited file) is not a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PassScores:
    """One pass's figures: its rows (`samples`), the scored rows and those that passed, each check's mean over the
    rows that carry it, the share of rows that stopped on their own, and the mean new tokens (`None` without
    counts)."""

    samples: int
    scored: int
    passed: int
    checks: dict[str, float]
    stopped: float
    mean_new_tokens: float | None

    @property
    def pass_rate(self) -> float | None:
        """Share of the scored rows that passed; `None` when no row has checks."""
        return self.passed / self.scored if self.scored else None

    def metrics(self) -> dict[str, float]:
        """The trackers' figures: `{"pass_rate": ..., "<check>": mean, ...}`, the checks in the order the rows name
        them; `{}` when no row has checks."""
        if self.pass_rate is None:
            return {}
        return {"pass_rate": self.pass_rate, **self.checks}


def check_value(result: Any) -> float | None:
    """A check's result as a number for its mean: true 1, false 0, a score as given; `None` for anything else."""
    if isinstance(result, bool):
        return 1.0 if result else 0.0
    if isinstance(result, (int, float)):
        return float(result)
    return None


def pass_scores(rows: list[dict[str, Any]]) -> PassScores:
    """[`PassScores`] of one pass's `samples.jsonl` rows (see the module's rules)."""
    verdicts = [row["passed"] for row in rows if row.get("passed") is not None]
    values: dict[str, list[float]] = {}
    for row in rows:
        checks = row.get("checks")
        if not isinstance(checks, dict):  # a prompt without checks, or a row written before them
            continue
        for name, result in checks.items():
            value = check_value(result)
            if value is not None:
                values.setdefault(name, []).append(value)
    tokens = [row["num_new_tokens"] for row in rows if _is_count(row.get("num_new_tokens"))]
    return PassScores(
        samples=len(rows),
        scored=len(verdicts),
        passed=sum(1 for verdict in verdicts if verdict is True),
        checks={name: sum(found) / len(found) for name, found in values.items()},
        stopped=sum(1 for row in rows if row.get("stopped")) / len(rows) if rows else 0.0,
        mean_new_tokens=sum(tokens) / len(tokens) if tokens else None,
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["PassScores", "check_value", "pass_scores"]
