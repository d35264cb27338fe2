"""PyTorch threads of each training process on a CPU (`smol_cpu_threads`).

```yaml
smol_cpu_threads: 2   # or let a memory preset on a CPU raise accelerate's default of one thread
```

`trl sft` on a CPU starts training with one thread: accelerate's launcher sets `OMP_NUM_THREADS=1` unless the variable
or `num_cpu_threads_per_process` is given. The CLI process marks that default (`trl_smol.launch`), and a memory
preset on a CPU then raises it to the cores each process has. A count the user set (the variable, the launcher
option or `smol_cpu_threads`) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..launch import raisable_cpu_threads
from ..memory.tiers import TIERS
from .base import Decision, RunContext
from .lever import PresetLever


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

    def check_arguments(self, args: Any) -> None:
        if args.smol_cpu_threads is not None and int(args.smol_cpu_threads) < 1:
            raise ValueError(
                f"smol_cpu_threads={args.smol_cpu_threads} is not valid; use a count >= 1, or leave it unset."
            )

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
