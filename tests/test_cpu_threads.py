"""Threads on a CPU: `trl sft` trains with one thread (accelerate's launcher default); a memory preset uses every core.

accelerate's single-process launcher sets `OMP_NUM_THREADS=1` for the training process unless the variable or
`num_cpu_threads_per_process` is given, so on a 2-core laptop `trl sft` runs at about 60% of the speed of the same
training in a Python script (torch takes one thread per core there; tests/benchmarks/bench_presets.py). The CLI
process marks such a launch for its training processes; under a memory preset they raise the count to the cores each
process has, in the preset table and the banner, but never more than the cores other processes leave free. Without a
preset, or with the user's own count, nothing changes.
"""

import pytest
import torch
from datasets import Dataset

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.config import UserSettings
from trl_smol.features import Source
from trl_smol.launch import (
    DEFAULT_THREADS_ENV,
    busy_cores_of_other_processes,
    has_accelerator,
    mark_default_cpu_threads,
    raisable_cpu_threads,
)
from trl_smol.testing import save_tiny_smollm3

ROW = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


@pytest.fixture
def one_thread_launch(monkeypatch):
    """A training process as `trl sft` starts it on a CPU: one torch thread, the CLI process's mark set."""
    if has_accelerator():
        pytest.skip("accelerate's CPU thread default applies to machines without an accelerator")
    monkeypatch.setenv(DEFAULT_THREADS_ENV, "1")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    # An idle machine unless a test says otherwise (the measurement itself: test_other_processes_load_is_measured)
    monkeypatch.setattr("trl_smol.features.cpu_threads.busy_cores_of_other_processes", lambda: 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    if raisable_cpu_threads() is None:
        torch.set_num_threads(before)
        pytest.skip("this machine gives the process a single core")
    yield raisable_cpu_threads()[1]
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_smollm3(tmp_path_factory.mktemp("tiny"), chat_template=SMOLLM3_CHAT_TEMPLATE)


def test_accelerate_starts_a_cpu_training_process_with_one_thread_and_the_cli_process_marks_it(monkeypatch):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    if has_accelerator():
        pytest.skip("a CPU-only launch")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    validated, _, _ = _validate_launch_command(launch_command_parser().parse_args([*args, "train.py"]))
    assert prepare_simple_launcher_cmd_env(validated)[1]["OMP_NUM_THREADS"] == "1"

    environ: dict[str, str] = {}
    assert mark_default_cpu_threads(args, environ) and environ[DEFAULT_THREADS_ENV] == "1"
    # the user's own thread count, in the environment or on the command line, is never marked
    assert not mark_default_cpu_threads(args, {"OMP_NUM_THREADS": "1", DEFAULT_THREADS_ENV: "1"})
    assert not mark_default_cpu_threads([*args, "--num_cpu_threads_per_process", "1"], environ)
    assert DEFAULT_THREADS_ENV not in environ


def test_a_memory_preset_raises_the_launchers_one_thread_to_the_cores_and_says_so(
    one_thread_launch, model_dir, tmp_path
):
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu")
    trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([ROW]))
    assert torch.get_num_threads() == one_thread_launch == trainer.args.smol_cpu_threads
    assert trainer.run_plan["cpu_threads"].source is Source.PRESET
    assert f"threads={one_thread_launch} (memory preset cpu)" in trainer.run_plan.banner()
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "smol_cpu_threads"]
    assert row.status == "changed" and "accelerate started training with 1 thread" in row.reason


def test_without_a_preset_or_with_the_users_own_count_the_threads_stay(one_thread_launch, model_dir, tmp_path):
    stock = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none")
    trainer = SmolSFTTrainer(model=model_dir, args=stock, train_dataset=Dataset.from_list([ROW]))
    assert torch.get_num_threads() == 1 and not trainer.run_plan.is_on("cpu_threads")

    own = SmolSFTConfig(
        output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu", smol_cpu_threads=1
    )
    own.user_settings = UserSettings(explicit=frozenset({"output_dir", "bf16", "memory_preset", "smol_cpu_threads"}))
    trainer = SmolSFTTrainer(model=model_dir, args=own, train_dataset=Dataset.from_list([ROW]))
    assert torch.get_num_threads() == 1 and trainer.run_plan["cpu_threads"].source is Source.USER
    assert "threads=1 (smol_cpu_threads)" in trainer.run_plan.banner()
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "smol_cpu_threads"]
    assert (row.value, row.status) == (1, "kept: explicit")  # the table shows what the preset would have done


def test_a_python_script_keeps_torchs_own_threads_under_a_preset(monkeypatch, model_dir, tmp_path):
    monkeypatch.delenv(DEFAULT_THREADS_ENV, raising=False)  # no `trl sft` launcher: torch took one thread per core
    before = torch.get_num_threads()
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu")
    trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([ROW]))
    assert torch.get_num_threads() == before and not trainer.run_plan.is_on("cpu_threads")


def test_a_thread_count_below_one_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="smol_cpu_threads=0 is not valid"):
        SmolSFTConfig(output_dir="out", bf16=False, smol_cpu_threads=0)


def test_a_preset_leaves_the_cores_other_processes_keep_busy(one_thread_launch, monkeypatch, model_dir, tmp_path):
    """A browser, a second run or a CI job on the same cores: more threads than free cores are slower, so the preset's
    raise is withdrawn (or lowered) and the table says why; the sample passes run with the same count."""
    monkeypatch.setattr("trl_smol.features.cpu_threads.busy_cores_of_other_processes", lambda: one_thread_launch - 0.5)
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu")
    trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([ROW]))
    assert torch.get_num_threads() == 1 and trainer.run_plan["cpu_threads"].source is Source.WITHDRAWN
    assert "threads=" not in trainer.run_plan.banner() and args.smol_cpu_threads is None
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "smol_cpu_threads"]
    assert row.status == "unavailable" and "other processes keep" in row.reason and "cores busy" in row.reason


def test_other_processes_load_is_measured():
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    # A spinner outside this run: started by a shell that exits at once, so it is no descendant of our launcher.
    started = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    spinner = psutil.Process(int(started.stdout.strip()))
    try:
        time.sleep(0.2)
        before, clock = sum(spinner.cpu_times()[:2]), time.monotonic()
        busy = busy_cores_of_other_processes(1.0)
        spun = (sum(spinner.cpu_times()[:2]) - before) / (time.monotonic() - clock)
    finally:
        os.kill(spinner.pid, signal.SIGKILL)
    if spun < 0.2:
        pytest.skip(f"the spinner got {spun:.2f} of a core: the machine is too busy to tell")
    assert busy >= spun - 0.25, (busy, spun)  # the spinner's share counts (with whatever else runs here)
