"""Resuming: a finished run has nothing left to train and is left as it is; a raised `max_steps` (or
`num_train_epochs`) trains on and says so; a checkpoint cut short or damaged is named with its file and skipped for the
newest one that can be resumed; the previous-run error suggests resuming only when there is something to resume.

Checkpoints here are built in `tmp_path` with a real `trainer_state.json` (transformers' `TrainerState`) and real
safetensors files, then damaged as a save cut short leaves them; each damage is also shown to break the loader that a
resume would call. The end-to-end case through `trl sft` is in tests/test_run_safety.py (it reuses its finished run).
"""

import hashlib
import json
import types
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import TrainerState

from trl_smol import SmolSFTConfig, SmolSFTTrainer
from trl_smol.run_safety import (
    NoCheckpointError,
    NothingToTrain,
    OutputDirLock,
    PreviousRunError,
    check_previous_run,
    checkpoint_problem,
    resumable_checkpoint,
)
from trl_smol.run_safety.guards import RunGuard, resume_path


def save_checkpoint(output_dir: Path, step: int, *, max_steps: int = 2, epochs: float = 1.0, **weights) -> Path:
    """A checkpoint as `Trainer` writes it: its state at `step` of a run of `max_steps` over `epochs`, LoRA weights
    (or the files given, name=tensors), an optimizer state."""
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    epoch = epochs * step / max_steps
    state = TrainerState(global_step=step, max_steps=max_steps, epoch=epoch, num_train_epochs=epochs)
    state.save_to_json(str(path / "trainer_state.json"))
    lora = {"lora_A": torch.ones(16, 64), "lora_B": torch.zeros(64, 16)}  # 8 KB: a cut in half lands in the data
    for name, tensors in (weights or {"adapter_model": lora}).items():
        save_file(tensors, str(path / f"{name}.safetensors"))
    torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
    return path


def run_args(output_dir: Path, *, max_steps: int = 2, epochs: float = 3.0, resume=None):
    """The settings the guard reads, named as in `SmolSFTConfig`."""
    return types.SimpleNamespace(
        output_dir=str(output_dir), max_steps=max_steps, num_train_epochs=epochs, resume_from_checkpoint=resume,
        overwrite_output_dir=False, process_index=0,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file of a run (but the lock's own two) with its content hash and modification time."""
    return {
        str(file.relative_to(folder)): (hashlib.sha256(file.read_bytes()).hexdigest(), file.stat().st_mtime_ns)
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.name not in (".trl_smol.lock", ".trl_smol_run.json")
    }


# --- a damaged checkpoint is named with its file and skipped -------------------------------------------------------
def cut_in_half(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def cut_inside_the_header(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:20])  # the 8-byte length, then part of the JSON header


def empty(file: Path) -> None:
    file.write_bytes(b"")


LOAD_ERRORS = (ValueError, EOFError, RuntimeError, SafetensorError)  # JSONDecodeError is a ValueError
DAMAGES = {
    # name: (file, damage, what the resume's own loader does with it, the problem named)
    "trainer_state.json cut short": (
        "trainer_state.json",
        cut_in_half,
        lambda file: TrainerState.load_from_json(str(file)),
        "trainer_state.json is cut short or damaged: not valid JSON",
    ),
    "empty adapter_model.safetensors": (
        "adapter_model.safetensors",
        empty,
        load_file,
        "adapter_model.safetensors is empty, 0 bytes",
    ),
    "safetensors header cut short": (
        "adapter_model.safetensors",
        cut_inside_the_header,
        load_file,
        "adapter_model.safetensors is cut short: its header says",
    ),
    "safetensors data cut short": (
        "adapter_model.safetensors",
        cut_in_half,
        load_file,
        "adapter_model.safetensors is cut short or damaged:",
    ),
    "empty optimizer.pt": ("optimizer.pt", empty, torch.load, "optimizer.pt is empty, 0 bytes"),
    "optimizer.pt cut short": (
        "optimizer.pt",
        cut_in_half,
        torch.load,
        "optimizer.pt is cut short or damaged:",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_named_with_its_file_and_skipped_for_the_newest_complete_one(tmp_path, damage):
    file_name, spoil, loader, problem = DAMAGES[damage]
    good = save_checkpoint(tmp_path, 1)
    damaged = save_checkpoint(tmp_path, 2)
    loader(damaged / file_name)  # loads before the damage
    spoil(damaged / file_name)
    with pytest.raises(LOAD_ERRORS):  # what a resume from it ends in, naming neither file nor checkpoint
        loader(damaged / file_name)

    path, skipped = resumable_checkpoint(tmp_path)

    assert path == good and checkpoint_problem(good) is None
    assert [entry.path for entry in skipped] == [damaged] and skipped[0].problem.startswith(problem)


def test_a_full_model_checkpoint_with_an_empty_model_safetensors_is_skipped(tmp_path):
    good = save_checkpoint(tmp_path, 1, model={"embed.weight": torch.ones(16, 8)})
    damaged = save_checkpoint(tmp_path, 2, model={"embed.weight": torch.ones(16, 8)})
    (damaged / "model.safetensors").write_bytes(b"")
    assert resumable_checkpoint(tmp_path) == (good, [(damaged, "model.safetensors is empty, 0 bytes")])


def test_when_every_checkpoint_is_damaged_the_error_is_one_line_naming_each(tmp_path, capsys):
    first, second = save_checkpoint(tmp_path, 1), save_checkpoint(tmp_path, 2)
    (first / "adapter_model.safetensors").write_bytes(b"")
    cut_in_half(second / "trainer_state.json")
    with pytest.raises(NoCheckpointError) as error:
        resume_path(run_args(tmp_path), True)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"No complete checkpoint to resume from in {tmp_path}: checkpoint-2 (trainer_state.json is cut short or "
        "damaged: not valid JSON"
    )
    assert "checkpoint-1 (adapter_model.safetensors is empty, 0 bytes)" in message
    assert "`--resume_from_checkpoint PATH`" in message and "`--overwrite_output_dir true`" in message


def test_a_damaged_checkpoint_named_explicitly_is_refused_naming_the_file(tmp_path):
    damaged = save_checkpoint(tmp_path, 2)
    (damaged / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(NoCheckpointError, match=rf"Cannot resume from {damaged}: adapter_model.safetensors is empty"):
        resume_path(run_args(tmp_path), str(damaged))


# --- a finished run --------------------------------------------------------------------------------------------------
def test_a_resume_of_a_finished_run_has_nothing_left_to_train_and_exits_0(tmp_path, capsys):
    last = save_checkpoint(tmp_path, 2, max_steps=2)
    before = snapshot(tmp_path)

    with pytest.raises(NothingToTrain) as stop:
        resume_path(run_args(tmp_path, max_steps=2), True)

    assert stop.value.code == 0  # a requeued job that is already done ends as done
    line = capsys.readouterr().err.strip()
    assert line == stop.value.message
    assert line.startswith(f"trl-smol: nothing left to train: {last} is at step 2, and `max_steps` is 2;")
    assert "raise `max_steps`" in line and "`--overwrite_output_dir true`" in line and "another `output_dir`" in line
    assert snapshot(tmp_path) == before


def test_a_raised_max_steps_trains_on_from_the_end_of_the_run_and_says_so(tmp_path, capsys):
    last = save_checkpoint(tmp_path, 2, max_steps=2)
    assert resume_path(run_args(tmp_path, max_steps=4), True) == str(last)
    assert capsys.readouterr().err.strip() == (
        f"trl-smol: resuming from {last} at step 2, where its run ended (max_steps 2); `max_steps` is 4 now: "
        "training on."
    )


def test_a_finished_run_whose_last_checkpoint_is_damaged_keeps_its_final_model(tmp_path, capsys):
    # The run saved checkpoint-2 (cut short, say by a full disk) and then its final model beside the checkpoints.
    save_checkpoint(tmp_path, 1, max_steps=2)
    cut_in_half(save_checkpoint(tmp_path, 2, max_steps=2) / "trainer_state.json")
    save_file({"lora_A": torch.ones(16, 64)}, str(tmp_path / "adapter_model.safetensors"))
    before = snapshot(tmp_path)

    with pytest.raises(NothingToTrain) as stop:  # not: train step 2 again from checkpoint-1 and replace the model
        resume_path(run_args(tmp_path, max_steps=2), True)

    assert stop.value.code == 0
    line = capsys.readouterr().err.strip()
    assert line == stop.value.message
    assert line.startswith(
        f"trl-smol: nothing left to train: {tmp_path} holds the final model (adapter_model.safetensors), saved "
        "after checkpoint-2 (trainer_state.json is cut short or damaged"
    )
    assert "; it is at step 2, and `max_steps` is 2; nothing was changed." in stop.value.message
    assert snapshot(tmp_path) == before
    # A new run in that output_dir is told the same: nothing left to resume, not `--resume_from_checkpoint true`.
    with pytest.raises(PreviousRunError, match="that has reached step 2, and `max_steps` is 2: nothing is left"):
        check_previous_run(tmp_path, resume=False, overwrite=False, max_steps=2)


def test_training_on_past_a_damaged_last_checkpoint_says_the_final_model_will_be_replaced(tmp_path, capsys):
    good = save_checkpoint(tmp_path, 1, max_steps=2)
    (save_checkpoint(tmp_path, 2, max_steps=2) / "adapter_model.safetensors").write_bytes(b"")
    save_file({"lora_A": torch.ones(16, 64)}, str(tmp_path / "adapter_model.safetensors"))

    assert resume_path(run_args(tmp_path, max_steps=4), True) == str(good)
    assert capsys.readouterr().err.strip() == (
        f"trl-smol: resuming from {good} at step 1 of 4; skipped checkpoint-2 (adapter_model.safetensors is empty, 0 "
        f"bytes); the final model in {tmp_path} (adapter_model.safetensors) is replaced when this run ends."
    )


def test_a_run_stopped_before_its_end_resumes_saying_where(tmp_path, capsys):
    stopped = save_checkpoint(tmp_path, 1, max_steps=4)
    (tmp_path / "checkpoint-3").mkdir()  # SIGKILL during a save
    assert resume_path(run_args(tmp_path, max_steps=4), True) == str(stopped)
    assert capsys.readouterr().err.strip() == (
        f"trl-smol: resuming from {stopped} at step 1 of 4; skipped checkpoint-3 (no trainer_state.json: a save cut "
        "short)."
    )


def test_a_run_trained_by_epochs_is_finished_at_its_last_epoch(tmp_path, capsys):
    last = save_checkpoint(tmp_path, 8, max_steps=8, epochs=2.0)  # 2 epochs of 4 steps
    with pytest.raises(NothingToTrain):
        resume_path(run_args(tmp_path, max_steps=-1, epochs=2.0), True)
    assert "is at epoch 2 (step 8), and `num_train_epochs` is 2;" in capsys.readouterr().err
    assert resume_path(run_args(tmp_path, max_steps=-1, epochs=3.0), True) == str(last)
    assert "where its run ended (epoch 2); `num_train_epochs` is 3 now: training on" in capsys.readouterr().err


def test_a_final_model_saved_with_its_trainer_state_is_a_finished_run(tmp_path):
    """`trainer.save_model()` and `trainer.save_state()` after training, no checkpoints (`save_strategy: no`)."""
    save_file({"embed.weight": torch.ones(4, 4)}, str(tmp_path / "model.safetensors"))
    TrainerState(global_step=5, max_steps=5).save_to_json(str(tmp_path / "trainer_state.json"))
    with pytest.raises(NothingToTrain):
        resume_path(run_args(tmp_path, max_steps=5), True)
    with pytest.raises(NoCheckpointError, match=rf"No checkpoint to resume from in {tmp_path}\."):
        resume_path(run_args(tmp_path, max_steps=10), True)  # more to train, but nothing to resume it from


def test_the_guard_stops_a_finished_run_before_loading_and_lets_the_output_dir_go(tmp_path, capsys):
    save_checkpoint(tmp_path, 2, max_steps=2)
    with pytest.raises(NothingToTrain):
        RunGuard(run_args(tmp_path, resume=True), "next-run", check_now=True, save_on_interrupt=True)
    assert not (tmp_path / ".trl_smol_run.json").exists()  # the lock is released, as at the end of a run
    OutputDirLock(tmp_path, run_id="after").acquire().release()


# --- the previous-run error suggests resuming only when something is left ------------------------------------------
def test_the_previous_run_error_suggests_resume_only_when_there_is_something_to_resume(tmp_path):
    stopped, finished, damaged, model_only = (tmp_path / name for name in ("stopped", "finished", "damaged", "model"))
    save_checkpoint(stopped, 1, max_steps=2)
    save_checkpoint(finished, 2, max_steps=2)
    (save_checkpoint(damaged, 1, max_steps=2) / "adapter_model.safetensors").write_bytes(b"")
    model_only.mkdir()
    save_file({"embed.weight": torch.ones(4, 4)}, str(model_only / "model.safetensors"))

    def message(folder, **target):
        with pytest.raises(PreviousRunError) as error:
            check_previous_run(folder, resume=False, overwrite=False, **target)
        return str(error.value)

    assert "stopped at step 1, and `max_steps` is 2. Continue it with `--resume_from_checkpoint true`, or start " in (
        message(stopped, max_steps=2)
    )
    finished_message = message(finished, max_steps=2)
    assert "that has reached step 2, and `max_steps` is 2: nothing is left to resume." in finished_message
    assert "--resume_from_checkpoint" not in finished_message and "`--overwrite_output_dir true`" in finished_message
    assert "--resume_from_checkpoint true" in message(finished, max_steps=4)  # a raised max_steps leaves steps
    damaged_text = message(damaged, max_steps=2)
    assert "no checkpoint to resume from: checkpoint-1 (adapter_model.safetensors is empty, 0 bytes)" in damaged_text
    for text in (damaged_text, message(model_only, max_steps=2)):
        assert "--resume_from_checkpoint" not in text and "`--overwrite_output_dir true`" in text


# --- in Python, at train() -----------------------------------------------------------------------------------------
ROWS = [
    {"messages": [{"role": "user", "content": f"What is {i}+1?"}, {"role": "assistant", "content": str(i + 1)}]}
    for i in range(8)
]


def test_in_python_train_of_a_finished_run_changes_nothing_and_a_raised_max_steps_trains_on(
    tmp_path, tiny_model_dir, capsys, one_thread
):
    def trainer(max_steps):
        args = SmolSFTConfig(
            output_dir=str(tmp_path), max_steps=max_steps, save_steps=1, per_device_train_batch_size=2,
            bf16=False, report_to="none", logging_steps=1, seed=3,
        )  # fmt: skip
        return SmolSFTTrainer(model=tiny_model_dir, args=args, train_dataset=Dataset.from_list(ROWS))

    first = trainer(max_steps=1)
    first.train()
    first.save_model()
    assert [checkpoint_problem(path) for path in tmp_path.glob("checkpoint-*")] == [None]  # what Trainer writes passes
    before = snapshot(tmp_path)

    with pytest.raises(NothingToTrain):
        trainer(max_steps=1).train(resume_from_checkpoint=True)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("trl-smol: nothing left to train: ")
    assert snapshot(tmp_path) == before

    trainer(max_steps=2).train(resume_from_checkpoint=True)
    assert "where its run ended (max_steps 1); `max_steps` is 2 now: training on." in capsys.readouterr().err
    assert json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
