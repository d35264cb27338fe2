"""PyTorch threads of each training process on a CPU (`smol_cpu_threads`).

```yaml
smol_cpu_threads: 2   # or let a memory preset on a CPU raise accelerate's default of one thread
```

`trl sft` on a CPU starts training with one thread: accelerate's launcher sets `OMP_NUM_THREADS=1` unless the variable
or `num_cpu_threads_per_process` is given. The CLI process marks that default (`trl_smol.launch`), and a memory
preset on a CPU then raises it to the cores each process has. A count the user set (the variable, the launcher
option or `smol_cpu_threads`) is kept, and a preset never uses more threads than the cores other processes leave free
(measured before the model loads): the sample passes run with the same count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..launch import busy_cores_of_other_processes, raisable_cpu_threads
from ..memory.tiers import TIERS
from .base import Decision, RunContext, Source
from .lever import PresetLever
from .values import whole_number


@dataclass
class CpuThreadsArguments:
    """
    smol_cpu_threads (`int` or `None`, *optional*, defaults to `None`):
        PyTorch threads of each training process (`torch.set_num_threads`). `None` keeps the process's own: a Python
        script gets one per core, while `trl sft` on a CPU starts training with one thread (accelerate's launcher sets
        `OMP_NUM_THREADS=1` when neither it nor `num_cpu_threads_per_process` is given). A memory preset on a CPU
        raises that launcher default to the cores each process has, and says so.
    """

    smol_cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "PyTorch threads per training process (torch.set_num_threads). None: as launched (`trl sft` on a "
            "CPU: 1, accelerate's default). A memory preset on a CPU uses the cores each process has."
        },
    )


class CpuThreads(PresetLever):
    name = "cpu_threads"
    setting = "smol_cpu_threads"
    banner_key = "threads"
    rules = {"smol_cpu_threads": whole_number(1, null="null (as launched)")}

    def decide(self, context: RunContext) -> Decision:
        decision = super().decide(context)
        if decision.source is not Source.PRESET:
            return decision  # the user's count, or no preset: as launched
        # Never more threads than free cores: other processes' load (a browser, a second run, a CI job) is measured
        # before the model loads (issue 23: on a 2-core machine at load 3-5, a matmul step took 143 ms with 2 threads
        # against 55 ms with 1).
        threads_now, _ = raisable_cpu_threads() or (1, decision.value)
        local = max(int(context.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
        cores = decision.value * local
        others = busy_cores_of_other_processes()
        usable = max(1, int((cores - others) / local + 0.25))  # a core counts as busy from 0.75 on
        if usable <= threads_now:
            reason = (
                f"other processes keep {others:.1f} of the {cores} cores busy: more threads than free cores are slower"
            )
            return replace(decision, source=Source.WITHDRAWN, reason=reason)
        if usable < decision.value:
            value, why = usable, f"{decision.proposal[1]}; {others:.1f} kept busy by other processes"
            return replace(decision, value=value, proposal=(value, why))
        return decision

    def proposal(self, context: RunContext) -> tuple[Any, str] | None:
        hardware = context.preset.hardware
        if TIERS[context.preset.tier].accelerator != "cpu" or hardware.accelerator != "cpu":
            return None
        threads = raisable_cpu_threads()
        if threads is None:
            return None
        return threads[1], (
            f"accelerate started training with {threads[0]} thread, its CPU default; each process has {threads[1]} "
            "cores"
        )

    def prepare(self, decision: Decision, plan: Any, args: Any, tokenizer: Any) -> Any:
        super().prepare(decision, plan, args, tokenizer)
        if decision.on:
            import torch

            torch.set_num_threads(int(decision.value))
        return None
