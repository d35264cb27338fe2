"""Which process of `trl sft` this is, and how its launch adapts to a machine without an accelerator.

`trl sft --config recipe.yaml` runs in two kinds of process (trl 1.16):

1. the **CLI process** (`.../bin/trl sft ...`) reads the recipe with `trl/scripts/sft.py`'s parser, then starts the
   training script through `accelerate launch`;
2. the **script process(es)** (`.../trl/scripts/sft.py ...`, one per rank) parse the same arguments again and train.

```python
>>> detect_role(["/venv/bin/trl", "sft", "--config", "r.yaml"])
'cli'
>>> detect_role(["/venv/lib/python3.11/site-packages/trl/scripts/sft.py", "--config", "r.yaml"])
'script'
```

Standard library only: [`trl_smol.hook`] imports this at every interpreter start-up.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

DISABLE_ENV = "TRL_SMOL_DISABLE"
ACTIVE_ENV = "TRL_SMOL_ACTIVE"  # set in the script process by the hook: the run was entered through `trl sft`
# Set by the hook in the `trl sft` CLI process: where a training process writes the one line that says why it failed,
# so that the CLI process prints it last (instead of accelerate's bare CalledProcessError).
FAILURE_FILE_ENV = "TRL_SMOL_FAILURE_FILE"

_SCRIPT_SUFFIX = os.path.join("trl", "scripts", "sft.py")


def is_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def entered_through_trl_sft() -> bool:
    """Whether this process is a training process started by `trl sft` with the plugin active."""
    return bool(os.environ.get(ACTIVE_ENV))


def detect_role(argv: Sequence[str], orig_argv: Sequence[str] = ()) -> str | None:
    """Which process of the `trl sft` flow this is: `"cli"`, `"script"`, or `None` for any other process."""
    if not argv:
        return None
    program = os.path.normpath(argv[0])
    if os.path.basename(program) in ("trl", "trl.exe") or program.endswith(os.path.join("trl", "cli", "main.py")):
        command = next((arg for arg in argv[1:] if not arg.startswith("-")), None)
        return "cli" if command == "sft" else None
    if program.endswith(_SCRIPT_SUFFIX):
        return "script"
    # `python -m trl.scripts.sft ...`: sys.argv[0] is still "-m" while .pth files run
    orig = list(orig_argv)
    if "-m" in orig and orig.index("-m") + 1 < len(orig) and orig[orig.index("-m") + 1] == "trl.scripts.sft":
        return "script"
    return None


def new_run_id() -> str:
    """An id that tells runs apart (samples.jsonl, trackio, the model card): start time and 4 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def report_failure(message: str) -> None:
    """Record why this training process fails, for the `trl sft` CLI process to print as its last line."""
    path = os.environ.get(FAILURE_FILE_ENV)
    if path:
        try:
            with open(path, "w", encoding="utf-8") as file:
                file.write(" ".join(message.split()))  # one line
        except OSError:
            pass


def current_role() -> str | None:
    return detect_role(sys.argv, getattr(sys, "orig_argv", ()))


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def cpu_multiprocess_launcher(launch_args: list[str]) -> list[str]:
    """Extra `accelerate launch` arguments so that `--num_processes N` starts N processes on a CPU-only machine.

    Without an accelerator, `accelerate launch` runs its single-process launcher whatever `num_processes` says; its
    torchrun-based launcher (selected by `--multi_gpu`) starts the N processes, and the script side then picks gloo.
    """
    if "--num_processes" not in launch_args or has_accelerator():
        return []
    index = launch_args.index("--num_processes")
    if index + 1 >= len(launch_args) or int(launch_args[index + 1]) <= 1:
        return []
    chosen = {"--multi_gpu", "--use_fsdp", "--use_deepspeed", "--use_megatron_lm", "--tpu", "--cpu"}
    if chosen & set(launch_args) or "--mpirun_hostfile" in launch_args:
        return []
    return ["--multi_gpu"]


def use_cpu_for_cpu_world(argv: list[str], recipe: Callable[[], dict]) -> list[str]:
    """In a multi-process run without an accelerator, default `use_cpu` to true so that ranks join with gloo.

    `recipe` returns the recipe's values; it is called only in such a run, to leave a `use_cpu` it sets alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or has_accelerator() or "--use_cpu" in argv:
        return argv
    if "use_cpu" in recipe():
        return argv
    return [*argv, "--use_cpu", "true"]
