"""Run safety (`overwrite_output_dir`, `save_on_interrupt`): one run per output dir, no silent overwrite, resume from
the newest complete checkpoint, a checkpoint when the run is stopped by SIGTERM or SIGINT ([run-safety.md]).

```yaml
overwrite_output_dir: true    # move a previous run aside instead of stopping
save_on_interrupt: true       # the default: checkpoint on SIGTERM / SIGINT, exit non-zero saying how to resume
```

The mechanisms live in `trl_smol.run_safety`; this module owns the settings and builds the trainer's [`RunGuard`]
before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..run_safety.guards import RunGuard
from .base import Decision, Entry, Feature, RunContext, Source


@dataclass
class RunSafetyArguments:
    """
    overwrite_output_dir (`bool`, *optional*, defaults to `False`):
        Start a new run in an `output_dir` that holds a previous run's model or checkpoints: its files are moved to
        `<output_dir>.previous-<time>` beside it first. Without it, and without `resume_from_checkpoint`, such a run
        stops before loading the model (transformers 5 removed its own `overwrite_output_dir`).
    save_on_interrupt (`bool`, *optional*, defaults to `True`):
        On SIGTERM or SIGINT, save a checkpoint at the end of the current step and stop, exiting non-zero with one line
        that says how to resume (what a preempted cluster job needs).
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an output_dir holding a previous run's model or checkpoints, moving its files "
            "to a dated folder beside it. Without it (or resume_from_checkpoint) such a run stops before loading."
        },
    )
    save_on_interrupt: bool = field(
        default=True,
        metadata={"help": "On SIGTERM/SIGINT: save a checkpoint at the end of the step, stop, and say how to resume."},
    )


class RunSafety(Feature):
    name = "run_safety"

    def check_arguments(self, args: Any) -> None:
        resume = args.resume_from_checkpoint
        if isinstance(resume, str) and resume.lower() in ("true", "last"):
            # `--resume_from_checkpoint true` on a command line: the last checkpoint, as `true` in a YAML recipe.
            args.resume_from_checkpoint = True

    def decide(self, context: RunContext) -> Decision:
        source = Source.USER if context.is_set("save_on_interrupt") else Source.DEFAULT
        # `trl sft` passes `resume_from_checkpoint` in the arguments: the output dir is checked before loading.
        checked_at = "before loading" if context.entry is Entry.TRL_SFT else "at train()"
        return Decision(self.name, source, bool(context.value("save_on_interrupt", True)), checked_at)

    def describe(self, decision: Decision) -> str | None:
        return None  # always there; docs/run-safety.md

    def prepare(self, decision: Decision, plan: Any, args: Any, tokenizer: Any) -> RunGuard:
        return RunGuard(args, plan.run_id, check_now=plan.entry is Entry.TRL_SFT, save_on_interrupt=decision.value)

    def callbacks(self, decision: Decision, plan: Any, args: Any, prepared: Any = None) -> list:
        return [prepared.interrupt] if prepared is not None and prepared.interrupt is not None else []
