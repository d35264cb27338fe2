"""Run safety: a run owns its output dir, never overwrites a previous run silently, resumes from a complete checkpoint,
and the last line printed on failure is the cause (stop signals: tests/test_preemption.py).

The points about `trl sft` go through the real command (slow tests); the mechanics are unit-tested first.
"""

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_training_runs import TRL, chat_data, trl_sft, write_recipe  # noqa: F401  (chat_data is a fixture)
from transformers import TrainerState

from trl_smol.run_safety import (
    OutputDirBusyError,
    OutputDirLock,
    PreviousRunError,
    check_previous_run,
    latest_complete_checkpoint,
    move_previous_run,
)
from trl_smol.run_safety.guards import resume_path

HOLD_LOCK = """
import sys, time
from trl_smol.run_safety import OutputDirLock
OutputDirLock(sys.argv[1], run_id="holder-run").acquire()
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(output_dir):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(output_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked", process.stderr.read()
    return process


def checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint at `step` of a 100-step run (or, not complete, the empty folder a save killed at once leaves)."""
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        TrainerState(global_step=step, max_steps=100).save_to_json(str(path / "trainer_state.json"))
        save_file({"lora_A": torch.ones(2, 2)}, str(path / "adapter_model.safetensors"))
    return path


# --- the lock -------------------------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_output_dir_is_refused_naming_the_holder(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(
            OutputDirBusyError, match=rf"{tmp_path} is in use by run holder-run \(process {holder.pid}"
        ):
            OutputDirLock(tmp_path, run_id="second").acquire()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_process_is_taken_over_and_said(tmp_path):
    holder = hold_lock(tmp_path)
    holder.kill()  # SIGKILL: no cleanup, the record stays; the OS releases the file lock
    holder.wait()
    lock = OutputDirLock(tmp_path, run_id="next").acquire()
    assert lock.took_over["pid"] == holder.pid and lock.took_over["run"] == "holder-run"
    assert json.loads((tmp_path / ".trl_smol_run.json").read_text())["run"] == "next"
    lock.release()
    assert not (tmp_path / ".trl_smol_run.json").exists()


def test_a_second_trainer_in_the_same_process_reuses_its_lock(tmp_path):
    first = OutputDirLock(tmp_path, run_id="a").acquire()
    second = OutputDirLock(tmp_path, run_id="b").acquire()  # a notebook training again: not a conflict
    assert second.took_over is None
    first.release()


# --- previous runs and checkpoints ----------------------------------------------------------------------------------
def test_a_previous_run_stops_a_new_one_that_neither_resumes_nor_overwrites(tmp_path):
    checkpoint(tmp_path, 2)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(PreviousRunError, match=r"--resume_from_checkpoint true.*--overwrite_output_dir true"):
        check_previous_run(tmp_path, resume=False, overwrite=False)
    assert check_previous_run(tmp_path, resume=True, overwrite=False) == ["checkpoint-2", "adapter_config.json"]
    assert check_previous_run(tmp_path / "new", resume=False, overwrite=False) == []


def test_overwrite_moves_the_whole_previous_run_beside_the_output_dir(tmp_path):
    out = tmp_path / "out"
    checkpoint(out, 2)
    (out / "samples.jsonl").write_text('{"step": 0}\n')
    lock = OutputDirLock(out, run_id="new").acquire()
    moved = move_previous_run(out)
    assert moved.parent == tmp_path and moved.name.startswith("out.previous-")
    assert sorted(p.name for p in moved.iterdir()) == ["checkpoint-2", "samples.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == [".trl_smol.lock", ".trl_smol_run.json"]  # only the lock stays
    lock.release()


def test_resume_takes_the_newest_complete_checkpoint_and_names_the_skipped(tmp_path):
    checkpoint(tmp_path, 2)
    complete = checkpoint(tmp_path, 10)
    cut_short = checkpoint(tmp_path, 12, complete=False)  # a save killed with SIGKILL
    assert latest_complete_checkpoint(tmp_path) == (complete, [cut_short])
    assert resume_path(types.SimpleNamespace(output_dir=str(tmp_path), max_steps=100), True) == str(complete)
    empty = tmp_path / "empty"
    checkpoint(empty, 4, complete=False)
    with pytest.raises(FileNotFoundError, match=r"No complete checkpoint .*: checkpoint-4 \(no trainer_state.json"):
        resume_path(types.SimpleNamespace(output_dir=str(empty), max_steps=100), True)


# --- through `trl sft` ----------------------------------------------------------------------------------------------
def last_line(result) -> str:
    return (result.stdout + result.stderr).strip().splitlines()[-1]


@pytest.mark.slow
def test_trl_sft_into_a_busy_output_dir_stops_before_loading_the_model(tmp_path, tiny_model_dir, chat_data):  # noqa: F811
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_model_dir, chat_data, out, max_steps=2)
    holder = hold_lock(out)
    try:
        result = trl_sft("--config", str(recipe))
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode != 0
    assert last_line(result).startswith(f"OutputDirBusyError: The output directory {out} is in use by run holder-run")
    assert "Loading" not in result.stderr and "trl-smol 0." not in result.stdout  # stopped before the model


FINISHED_RUN = {"max_steps": 2, "save_steps": 2}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, chat_data):  # noqa: F811
    """One finished `trl sft` run (2 steps, a checkpoint at step 2), launched once: each test that starts from a
    finished run works on its own copy ([`copy_of_finished_run`])."""
    folder = tmp_path_factory.mktemp("finished-run")
    recipe = write_recipe(folder / "r.yaml", tiny_model_dir, chat_data, folder / "out", **FINISHED_RUN)
    result = trl_sft("--config", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    return types.SimpleNamespace(output_dir=folder / "out", result=result)


def copy_of_finished_run(finished_run, tmp_path, tiny_model_dir, chat_data):  # noqa: F811
    """The finished run copied to `tmp_path/out` as it was left, and its recipe pointing there."""
    out = tmp_path / "out"
    shutil.copytree(finished_run.output_dir, out, symlinks=True)
    return out, write_recipe(tmp_path / "r.yaml", tiny_model_dir, chat_data, out, **FINISHED_RUN)


@pytest.mark.slow
def test_trl_sft_never_overwrites_a_finished_run_silently(tmp_path, tiny_model_dir, chat_data, finished_run):  # noqa: F811
    out, recipe = copy_of_finished_run(finished_run, tmp_path, tiny_model_dir, chat_data)
    first = finished_run.result
    first_run = next(line for line in first.stdout.splitlines() if line.startswith("trl-smol ")).split("run ")[1][:20]

    again = trl_sft("--config", str(recipe))
    assert again.returncode != 0
    assert last_line(again).startswith(f"PreviousRunError: The output directory {out} holds a previous run")
    assert "that has reached step 2, and `max_steps` is 2: nothing is left to resume." in last_line(again)
    assert "--resume_from_checkpoint" not in last_line(again) and "--overwrite_output_dir true" in last_line(again)

    fresh = trl_sft("--config", str(recipe), "--overwrite_output_dir", "true")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    (moved,) = tmp_path.glob("out.previous-*")
    assert f"was moved to {moved}" in fresh.stderr
    assert {row["run"] for row in map(json.loads, (moved / "samples.jsonl").read_text().splitlines())} == {first_run}
    new_runs = {row["run"] for row in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert len(new_runs) == 1 and first_run not in new_runs  # nothing of the old run mixed in


def files_of_run(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file a run left (but the lock's own two), with its bytes and modification time."""
    return {
        str(file.relative_to(folder)): (file.read_bytes(), file.stat().st_mtime_ns)
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.name not in (".trl_smol.lock", ".trl_smol_run.json")
    }


@pytest.mark.slow
def test_trl_sft_resume_of_a_finished_run_changes_nothing_and_a_raised_max_steps_trains_on(
    tmp_path,
    tiny_model_dir,
    chat_data,  # noqa: F811
    finished_run,
):
    out, recipe = copy_of_finished_run(finished_run, tmp_path, tiny_model_dir, chat_data)
    finished = files_of_run(out)

    again = trl_sft("--config", str(recipe), "--resume_from_checkpoint", "true")  # a requeued job, say

    assert again.returncode == 0, again.stderr[-3000:]  # nothing to train is done, not failed (docs/run-safety.md)
    assert last_line(again).startswith(
        f"trl-smol: nothing left to train: {out}/checkpoint-2 is at step 2, and `max_steps` is 2; nothing was changed."
    )
    assert "Loading" not in again.stderr  # stopped before the model loaded
    assert files_of_run(out) == finished  # the model, its checkpoint, samples and card: same bytes, same times

    # A save cut short after the end (a damaged trainer_state.json) is named and skipped; max_steps raised to 4.
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3, "max_')
    more = trl_sft("--config", str(recipe), "--resume_from_checkpoint", "true", "--max_steps", "4")

    assert more.returncode == 0, more.stderr[-3000:]
    assert (
        f"trl-smol: resuming from {out}/checkpoint-2 at step 2, where its run ended (max_steps 2); `max_steps` is 4 "
        "now: training on; skipped checkpoint-3 (trainer_state.json is cut short or damaged: not valid JSON"
    ) in more.stderr
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    kept = {name.removeprefix("checkpoint-2/"): value for name, value in finished.items() if "checkpoint-2/" in name}
    assert files_of_run(out / "checkpoint-2") == kept  # the finished run's checkpoint stays as it was
