"""Per-process memory of a sharded run: ZeRO / FSDP split model states across processes, activations stay whole.

```python
from trl_smol.memory import estimate_for_run
from trl_smol.memory.sharding import sharding_from_accelerate_config

sharding = sharding_from_accelerate_config("recipes/accelerate/zero3.yaml", num_processes=8)
per_gpu = estimate_for_run(args, model, **sharding.estimate_kwargs())  # weights, gradients, optimizer states / 8
```

What each engine divides by the number of processes (DeepSpeed ZeRO paper, Rajbhandari et al. 2020, section 5;
PyTorch FSDP `FULL_SHARD`): ZeRO-1 the optimizer states; ZeRO-2 also the gradients; ZeRO-3 and FSDP full sharding
also the parameters (and their 4-bit quantisation state, and LoRA adapters). Activations, logits and the framework's
own overhead are per process and are not divided. ZeRO-3 / FSDP also gather one layer's full parameters at a time
during forward and backward; for SmolLM3-3B one of 36 layers is under 3% of the weights, inside the estimate's
overhead term. The division happens inside `estimate_memory` (`shard_stage`, `shard_processes`), before it decides
which phase of a full fine-tune peaks: sharded optimizer states can move the peak to the loss backward.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sharding:
    """How model states are split: `engine` as the banner names it, `stage` in ZeRO terms (FSDP full shard: 3)."""

    engine: str  # "deepspeed-zero3", "fsdp2", "ddp", ...
    stage: int  # 0: nothing sharded (DDP), 1-3: ZeRO stages; FSDP FULL_SHARD is 3, SHARD_GRAD_OP is 2
    processes: int

    @property
    def label(self) -> str:
        return f"{self.engine} x{self.processes}"

    def estimate_kwargs(self) -> dict[str, int]:
        """Keywords of `estimate_memory` / `estimate_for_run` for the per-process estimate."""
        return {"shard_stage": self.stage, "shard_processes": self.processes}


def sharding_from_accelerate_config(path: str, num_processes: int | None = None) -> Sharding:
    """What an accelerate config file shards; `num_processes` overrides the file's (as `--num_processes` does)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(path)
    kind = str(getattr(config.distributed_type, "value", config.distributed_type)).upper()
    processes = int(num_processes or config.num_processes or 1)
    if kind == "DEEPSPEED":
        stage = int((config.deepspeed_config or {}).get("zero_stage", 0))
        return Sharding(f"deepspeed-zero{stage}", stage, processes)
    if kind == "FSDP":
        fsdp = config.fsdp_config or {}
        version = int(fsdp.get("fsdp_version", 1))
        strategy = str(fsdp.get("fsdp_sharding_strategy", fsdp.get("fsdp_reshard_after_forward", "FULL_SHARD")))
        stage = 2 if "GRAD_OP" in strategy.upper() or strategy.lower() == "false" else 3
        return Sharding("fsdp2" if version == 2 else "fsdp", stage, processes)
    return Sharding("ddp" if processes > 1 else "single process", 0, processes)


def sharding_from_environment(environ: dict[str, str]) -> Sharding | None:
    """What the engine `accelerate launch` started this process under shards, from the variables it sets for the
    training processes (`ACCELERATE_USE_DEEPSPEED`, `ACCELERATE_DEEPSPEED_ZERO_STAGE`, `ACCELERATE_USE_FSDP`,
    `FSDP_VERSION`, `FSDP_SHARDING_STRATEGY` / `FSDP_RESHARD_AFTER_FORWARD`, `WORLD_SIZE`); None for a run that
    shards nothing."""
    processes = int(environ.get("WORLD_SIZE", "1") or 1)
    if environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        stage = int(environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0") or 0)
        return Sharding(f"deepspeed-zero{stage}", stage, processes) if stage else None
    if environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        version = int(environ.get("FSDP_VERSION", "1") or 1)
        strategy = environ.get("FSDP_SHARDING_STRATEGY", environ.get("FSDP_RESHARD_AFTER_FORWARD", "FULL_SHARD"))
        stage = 2 if "GRAD_OP" in strategy.upper() or strategy.lower() == "false" else 3
        return Sharding("fsdp2" if version == 2 else "fsdp", stage, processes)
    return None
