"""Ending a multi-process CPU run without the gloo exit hang.

A run of `trl sft --num_processes 2` on CPU (gloo) sometimes never exits: training finished, the model is saved, and
one rank hangs forever. Its stacks show PyTorch's gloo teardown deadlock: when the last reference to the process group
goes (the DDP reducer, freed as the script's `main` returns), `~ProcessGroupGloo` joins its worker threads while
holding the GIL, and a worker is still releasing the tensors of the last `all_gather` (transformers' `store_flos` at
the end of training), which needs the GIL. Measured on this project's 2-core machine: 4 hangs in 12 plugin runs and
1 in 12 with the plugin disabled, stock TRL, so the cause is not ours; the remedy is ours to apply.

[`settle_process_group`] runs before the group is destroyed: a barrier (every rank has finished its collectives),
then a short sleep without the GIL so that the worker threads drop their finished work. `SmolSFTTrainer.end()`, which
TRL's `sft` script calls last, uses it.
"""

from __future__ import annotations

import time
from typing import Any

# Long enough for a descheduled worker thread on a busy machine to take the GIL once; paid once per run.
SETTLE_SECONDS = 0.25


def settle_process_group(seconds: float = SETTLE_SECONDS) -> bool:
    """Let a gloo process group's worker threads go idle before the group is destroyed.

    Not a guarantee (a worker descheduled for the whole pause could still be caught), but on this project's 2-core
    machine it took the exit hang from 4 runs in 12 to none in 37.

    Call it on every rank, after the last collective and before the group is destroyed. Returns whether there was
    a gloo group to settle; other backends (NCCL, none) are left alone.

    Example:

    ```python
    trainer.train()
    trainer.save_model()
    settle_process_group()  # SmolSFTTrainer.end() does this for you
    trainer.accelerator.end_training()
    ```
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() != "gloo":
        return False
    dist.barrier()
    time.sleep(seconds)  # releases the GIL: a worker still freeing the last collective's tensors can finish
    return True


def describe_engine(state: Any) -> str | None:
    """How the run is distributed, as it really runs, for the banner: `"deepspeed-zero3 x2 (cpu, gloo)"`,
    `"ddp x4 (cuda, nccl)"`, `"fsdp2 x8 (cuda, nccl)"`; None for a single process.

    `state` is accelerate's `AcceleratorState` (or `trainer.accelerator.state`).
    """
    processes = int(getattr(state, "num_processes", 1) or 1)
    if processes <= 1:
        return None
    kind = str(getattr(state.distributed_type, "value", state.distributed_type)).upper()
    if kind == "DEEPSPEED":
        stage = getattr(getattr(state, "deepspeed_plugin", None), "zero_stage", None)
        engine = f"deepspeed-zero{stage}" if stage is not None else "deepspeed"
    elif kind == "FSDP":
        version = getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", 1)
        engine = "fsdp2" if version == 2 else "fsdp"
    elif kind in ("MULTI_GPU", "MULTI_CPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_MUSA", "MULTI_HPU"):
        engine = "ddp"
    else:
        engine = kind.lower()
    device = getattr(getattr(state, "device", None), "type", "?")
    backend = getattr(state, "backend", None) or "?"
    return f"{engine} x{processes} ({device}, {backend})"


def wait_for_every_rank() -> bool:
    """A barrier across the run's processes (and the gloo settle of [`settle_process_group`]) before a rank exits
    early, as after a stop signal: no rank leaves while another still saves. Returns whether there were other ranks."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return False
    if not settle_process_group():
        dist.barrier()
    return True
