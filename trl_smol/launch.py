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
from collections.abc import Callable, Mapping, Sequence

DISABLE_ENV = "TRL_SMOL_DISABLE"
ACTIVE_ENV = "TRL_SMOL_ACTIVE"  # set in the script process by the hook: the run was entered through `trl sft`
# Set by the hook in the `trl sft` CLI process: where a training process writes the one line that says why it failed,
# so that the CLI process prints it last (instead of accelerate's bare CalledProcessError).
FAILURE_FILE_ENV = "TRL_SMOL_FAILURE_FILE"
# Set by the `trl sft` CLI process for its training processes when their thread count is accelerate's CPU default
# (`OMP_NUM_THREADS=1`: neither that variable nor `num_cpu_threads_per_process` was given), so that a memory preset
# may raise it. A thread count the user chose is never changed.
DEFAULT_THREADS_ENV = "TRL_SMOL_DEFAULT_CPU_THREADS"

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


def report_failure(message: str) -> bool:
    """Record why this training process fails, for the `trl sft` CLI process to print as its last line. Returns
    whether it was recorded (False outside `trl sft`: the caller prints the line itself)."""
    path = os.environ.get(FAILURE_FILE_ENV)
    if path:
        try:
            with open(path, "w", encoding="utf-8") as file:
                file.write(" ".join(message.split()))  # one line
            return True
        except OSError:
            pass
    return False


def training_exit_status(error: BaseException) -> int:
    """The exit status `trl sft` ends with when its training processes failed: theirs (accelerate's
    `CalledProcessError.returncode`, or the first failed rank's of torch's `ChildFailedError`), else 1."""
    codes = [getattr(error, "returncode", None)]
    codes += [getattr(failure, "exitcode", None) for failure in getattr(error, "failures", {}).values()]
    return next((code for code in codes if isinstance(code, int) and 0 < code < 256), 1)


def current_role() -> str | None:
    return detect_role(sys.argv, getattr(sys, "orig_argv", ()))


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def cpu_multiprocess_launcher(launch_args: list[str]) -> list[str]:
    """Extra `accelerate launch` arguments so that `--num_processes N` starts N processes on a CPU-only machine.

    Without an accelerator, `accelerate launch` runs its single-process launcher whatever `num_processes` says; its
    torchrun-based launcher (selected by `--multi_gpu`) starts the N processes, and the script side then picks gloo.
    Nothing is added when an accelerate config names an engine (DeepSpeed, FSDP, ...): `--multi_gpu` would replace it
    with plain DDP.
    """
    if "--num_processes" not in launch_args or has_accelerator():
        return []
    index = launch_args.index("--num_processes")
    if index + 1 >= len(launch_args) or int(launch_args[index + 1]) <= 1:
        return []
    chosen = {"--multi_gpu", "--use_fsdp", "--use_deepspeed", "--use_megatron_lm", "--tpu", "--cpu"}
    if chosen & set(launch_args) or "--mpirun_hostfile" in launch_args:
        return []
    config = accelerate_config_path(launch_args)
    if config is not None and config_engine(config) in SHARDING_ENGINES:
        return []
    return ["--multi_gpu"]


# --- the engine an accelerate config names, and how it runs on a machine without an accelerator ---------------------
SHARDING_ENGINES = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")


class EngineUnavailableError(RuntimeError):
    """The accelerate config asks for an engine that cannot run on this machine, where accelerate would silently run
    another one."""


def accelerate_config_path(launch_args: list[str]) -> str | None:
    """The accelerate config file `trl sft` launches with: `--config_file`, `--accelerate_config` (a path or a config
    name shipped with TRL), or the file `accelerate config` wrote; None without one."""
    return _config_argument(launch_args)[1]


def _config_argument(launch_args: list[str]) -> tuple[str | None, str | None]:
    """(the value given on the command line or in the recipe, or None; the config file it resolves to, or None)."""
    for flag in ("--config_file", "--accelerate_config"):
        if flag in launch_args and launch_args.index(flag) + 1 < len(launch_args):
            value = launch_args[launch_args.index(flag) + 1]
            if flag == "--accelerate_config":
                from trl.cli.accelerate_config import resolve_accelerate_config_argument

                return value, str(resolve_accelerate_config_argument([flag, value])[1])
            return value, value
    from accelerate.commands.config import default_config_file

    return None, default_config_file if os.path.isfile(default_config_file) else None


def config_engine(path: str) -> str:
    """The config's `distributed_type` as accelerate names it: "DEEPSPEED", "FSDP", "MULTI_GPU", "NO", ..."""
    from accelerate.commands.config.config_args import load_config_from_file

    kind = getattr(load_config_from_file(path), "distributed_type", "NO")
    return str(getattr(kind, "value", kind)).upper()


def engine_for_cpu(launch_args: list[str]) -> dict[str, str]:
    """On a machine without an accelerator, how `trl sft` launches the engine its accelerate config names.

    Returns `{config argument: adapted copy}` for DeepSpeed (the copy says `use_cpu: true` and `mixed_precision: 'no'`:
    DeepSpeed's CPU accelerator trains over gloo in float32, where a GPU config would ask for bf16 on a CPU that
    emulates it); `{}` when nothing changes (an accelerator is present, no config, or no sharding engine). Raises
    [`EngineUnavailableError`] for FSDP, which accelerate runs only on GPU/XPU/NPU: on a CPU it would train plain DDP,
    or processes that never connect, and exit 0.
    """
    argument, path = _config_argument(launch_args)
    if path is None or has_accelerator():
        return {}
    engine = config_engine(path)
    if engine == "FSDP":
        raise EngineUnavailableError(
            f"{path} asks for FSDP, which accelerate runs only on GPUs (or XPU/NPU); on this CPU-only machine it "
            "would silently train plain DDP instead. Run it on GPUs, or use DeepSpeed ZeRO-3, which shards on CPU "
            "too: --accelerate_config recipes/accelerate/zero3.yaml."
        )
    if engine != "DEEPSPEED":
        return {}
    import atexit
    import shutil
    import tempfile

    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(path)
    if config.use_cpu and str(getattr(config.mixed_precision, "value", config.mixed_precision)) == "no":
        return {}
    config.use_cpu, config.mixed_precision = True, "no"
    folder = tempfile.mkdtemp(prefix="trl-smol-accelerate-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # this process waits for training, then removes it
    adapted = os.path.join(folder, os.path.basename(path))
    config.to_yaml_file(adapted)
    # The default config file is read by accelerate itself: the copy is then passed as `--config_file`.
    return {argument or "": adapted}


def check_requested_engine(environ: Mapping[str, str] | None = None) -> None:
    """Stop before the model loads when the launcher asked for FSDP on a machine without an accelerator.

    `accelerate launch` with an FSDP config sets `ACCELERATE_USE_FSDP=true` for each process; accelerate 1.15 turns
    FSDP on only for GPU/XPU/NPU kinds, so on a CPU the run would silently train plain DDP (or unconnected processes).
    """
    environ = os.environ if environ is None else environ
    if str(environ.get("ACCELERATE_USE_FSDP", "")).lower() in ("1", "true") and not has_accelerator():
        raise RuntimeError(
            "The launcher asked for FSDP (ACCELERATE_USE_FSDP=true), which accelerate runs only on GPUs (or XPU/NPU); "
            "on this CPU-only machine the run would silently train plain DDP instead. Run it on GPUs, or use "
            "DeepSpeed ZeRO-3, which shards on CPU too (recipes/accelerate/zero3.yaml)."
        )


# Launcher choices after which accelerate counts processes its own way: no `num_processes` is filled in for them.
_LAUNCHER_CHOICES = {"multi_gpu", "use_fsdp", "use_deepspeed", "use_megatron_lm", "tpu", "cpu", "mpirun_hostfile"}
_VENDOR_TORCH_BACKENDS = ("torch_npu", "torch_mlu", "torch_sdaa", "torch_musa", "habana_frameworks", "torch_neuronx")


def given_options(args: Sequence[str]) -> set[str]:
    """The option names in `args`, as accelerate's parser stores them: `--num-processes=2` -> `num_processes`."""
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in args if arg.startswith("--")}


def accelerate_launch_arguments(launch_args: list[str]) -> list[str]:
    """Extra `accelerate launch` arguments for `trl sft`: the multi-process CPU launcher
    ([`cpu_multiprocess_launcher`]), then the values accelerate would fill in and warn about.

    Without an accelerate config file (`--config_file`, a recipe's `accelerate_config`, or the file `accelerate config`
    writes), accelerate picks `num_processes` (the number of accelerator devices: 0 on a CPU, where one process runs),
    `num_machines` 1, `mixed_precision` "no" and `dynamo_backend` "no", and prints a warning block about them. They
    are passed here, with the values accelerate would pick, so that the launch is the same and says nothing.

    ```python
    >>> accelerate_launch_arguments([])  # on a machine without an accelerator nor accelerate config
    ['--num_processes', '1', '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no']
    ```
    """
    extra = cpu_multiprocess_launcher(launch_args)
    given = given_options([*launch_args, *extra])
    if "config_file" in given or "accelerate_config" in given or (_accelerate_config_exists() and "cpu" not in given):
        return extra  # accelerate takes these values from the config file
    count = None if given & _LAUNCHER_CHOICES else _accelerator_count()
    defaults = {"num_processes": None if count is None else str(max(count, 1)), "num_machines": "1"}
    defaults.update(mixed_precision="no", dynamo_backend="no")
    missing = [(key, value) for key, value in defaults.items() if key not in given and value is not None]
    return extra + [item for key, value in missing for item in (f"--{key}", value)]


def mark_default_cpu_threads(launch_args: Sequence[str], environ: dict[str, str] | None = None) -> bool:
    """In the CLI process: record for the training processes whether accelerate will start them with its CPU default
    of one thread ([`DEFAULT_THREADS_ENV`]); returns it.

    accelerate's launcher sets `OMP_NUM_THREADS` to `num_cpu_threads_per_process`, which defaults to the variable
    itself or 1 (it raises it only for a config or `--cpu` launch that says `use_cpu`). On a 2-core laptop that halves
    the speed of a `trl sft` run against the same code in a Python script, where torch takes one thread per core.
    """
    environ = os.environ if environ is None else environ
    defaulted = (
        not has_accelerator()
        and "OMP_NUM_THREADS" not in environ
        and "num_cpu_threads_per_process" not in given_options(launch_args)
    )
    if defaulted:
        environ[DEFAULT_THREADS_ENV] = "1"
    else:
        environ.pop(DEFAULT_THREADS_ENV, None)
    return defaulted


def raisable_cpu_threads(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """In a training process started with accelerate's default thread count: `(threads now, cores per process)` when
    the process has more cores than threads, else None (a user's `OMP_NUM_THREADS`, a Python script, a GPU run)."""
    environ = os.environ if environ is None else environ
    if environ.get(DEFAULT_THREADS_ENV) != "1":
        return None
    import psutil
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = min(usable, psutil.cpu_count(logical=False) or usable)  # accelerate counts physical cores too
    local = max(int(environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    per_process, threads = max(cores // local, 1), torch.get_num_threads()
    return (threads, per_process) if per_process > threads else None


def busy_cores_of_other_processes(interval: float = 0.5) -> float:
    """How many cores processes outside this run keep busy, measured over `interval` seconds: the machine's busy time
    minus that of this run's processes (this one, the process that launched it and all of that one's descendants:
    the `trl sft` CLI and the other ranks). A browser, a second run or a CI job on the same machine counts."""
    import time

    import psutil

    def run_processes() -> list[psutil.Process]:
        me = psutil.Process()
        try:
            launcher = me.parent()
            family = [launcher, *launcher.children(recursive=True)] if launcher is not None else [me]
        except psutil.Error:
            family = [me]
        return family if me in family else [*family, me]

    def busy(processes: list[psutil.Process]) -> tuple[float, float]:
        times = psutil.cpu_times()
        machine = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        own = 0.0
        for process in processes:
            try:
                cpu = process.cpu_times()
                own += cpu.user + cpu.system
            except psutil.Error:
                continue
        return machine, own

    processes = run_processes()
    started, (machine_before, own_before) = time.monotonic(), busy(processes)
    time.sleep(interval)
    machine_after, own_after = busy(processes)
    elapsed = max(time.monotonic() - started, 1e-3)
    return max(0.0, ((machine_after - machine_before) - (own_after - own_before)) / elapsed)


def _accelerate_config_exists() -> bool:
    from accelerate.commands.config import default_config_file

    return os.path.isfile(default_config_file)


def _accelerator_count() -> int | None:
    """The device count accelerate starts one process per; `None` where only accelerate can tell (vendor backends)."""
    import importlib.util

    import torch

    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.xpu.device_count()
    if any(importlib.util.find_spec(name) is not None for name in _VENDOR_TORCH_BACKENDS):
        return None
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def use_cpu_for_cpu_world(argv: list[str], recipe: Callable[[], dict]) -> list[str]:
    """In a multi-process run without an accelerator, default `use_cpu` to true so that ranks join with gloo.

    `recipe` returns the recipe's values; it is called only in such a run, to leave a `use_cpu` it sets alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or has_accelerator() or "--use_cpu" in argv:
        return argv
    if "use_cpu" in recipe():
        return argv
    return [*argv, "--use_cpu", "true"]
