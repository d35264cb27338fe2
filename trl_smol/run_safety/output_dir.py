"""The output directory of a run: one run at a time, no silent overwrite, resume from a complete checkpoint.

```python
from trl_smol.run_safety import OutputDirLock, check_previous_run, latest_complete_checkpoint

lock = OutputDirLock("smollm3-sft", run_id="20261129-221500-3f2a").acquire()   # OutputDirBusyError if in use
check_previous_run("smollm3-sft", resume=False, overwrite=False, max_steps=2000)   # PreviousRunError if a run is there
path, skipped = latest_complete_checkpoint("smollm3-sft")                    # skips checkpoints cut short or damaged
```

The previous-run error names the way out that applies: resume only when the run has steps left for the new settings
(`max_steps`, else `num_train_epochs`), else `overwrite_output_dir` or another `output_dir`. Which checkpoints can be
resumed, and how far a run got, is [`trl_smol.run_safety.checkpoints`].

The lock is an OS file lock (`filelock`) on `output_dir/.trl_smol.lock`, so the operating system releases it when
the process dies, however it dies; `output_dir/.trl_smol_run.json` says who holds it (process, host, run id, start
time), for the error a second run gets and for the notice when a run takes over a lock whose holder is gone.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from .checkpoints import Progress, checkpoints, final_model_file, resumable_checkpoint

LOCK_FILE = ".trl_smol.lock"
HOLDER_FILE = ".trl_smol_run.json"
# What a finished or checkpointed run leaves: any of these in the output dir is a previous run's work.
MODEL_FILES = ("config.json", "adapter_config.json", "model.safetensors", "adapter_model.safetensors")


class OutputDirBusyError(RuntimeError):
    """Another run holds the output directory."""


class PreviousRunError(RuntimeError):
    """The output directory holds a previous run's model or checkpoints; the run neither resumes nor overwrites."""


class NoCheckpointError(FileNotFoundError):
    """A resume was asked for, and no checkpoint it names or finds can be resumed (each is named with its problem)."""


class NothingToTrain(SystemExit):
    """A resume of a run that has already trained what the settings ask for: nothing to do, so nothing is changed.

    A `SystemExit` with status 0: a script (or a scheduler requeueing its job) ends as after a finished run, without
    reaching the `save_model()` that would replace the finished model with the one loaded at start; `message` is the
    line printed."""

    def __init__(self, message: str):
        super().__init__(0)
        self.message = message


# Locks this process holds, by directory: a second trainer in the same process (a notebook training again) reuses
# its lock instead of failing against itself.
_HELD: dict[str, FileLock] = {}


class OutputDirLock:
    """Exclusive use of an output directory by one run. Only the main process of a run takes it; the other ranks of
    the same run share it. Released by [`release`], at interpreter exit, or by the OS when the process dies."""

    def __init__(self, output_dir: str | os.PathLike, run_id: str):
        self.output_dir = Path(output_dir)
        self.run_id = run_id
        key = str(self.output_dir.resolve() / LOCK_FILE)
        self._lock = _HELD.get(key) or FileLock(key)
        self._key = key
        self.took_over: dict | None = None  # the record of a holder that had died, when this run replaced it
        self.created: list[Path] = []  # the folders `acquire` created, deepest first

    def acquire(self) -> OutputDirLock:
        self.created = [path for path in (self.output_dir, *self.output_dir.parents) if not path.exists()]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        holder = self.holder()
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            who = _describe(holder) if holder else "another process"
            raise OutputDirBusyError(
                f"The output directory {self.output_dir} is in use by {who}. Wait for that run to finish, stop it, or "
                "choose another `output_dir`."
            ) from None
        if holder and holder.get("pid") != os.getpid():
            self.took_over = holder  # its process is gone (the OS released its lock): this run takes over
        if self._key not in _HELD:
            _HELD[self._key] = self._lock
            atexit.register(self.release)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "run": self.run_id, "started": _now()}
        (self.output_dir / HOLDER_FILE).write_text(json.dumps(record) + "\n")
        return self

    def holder(self) -> dict | None:
        try:
            return json.loads((self.output_dir / HOLDER_FILE).read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if _HELD.pop(self._key, None) is not None and self._lock.is_locked:
            (self.output_dir / HOLDER_FILE).unlink(missing_ok=True)
            self._lock.release(force=True)
            self._remove_if_unused()

    def _remove_if_unused(self) -> None:
        """A run that created the output dir and wrote nothing into it (it failed before) leaves no folder holding
        only the lock file; a folder that holds anything else is kept."""
        try:
            if self.created and [path.name for path in self.output_dir.iterdir()] == [LOCK_FILE]:
                (self.output_dir / LOCK_FILE).unlink()
            for folder in self.created:  # deepest first; stops at the first that is not empty
                folder.rmdir()
        except OSError:
            pass


def _describe(holder: dict) -> str:
    where = f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
    return f"run {holder.get('run')} ({where})"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def describe_takeover(holder: dict) -> str:
    return f"trl-smol: took over the output-directory lock of {_describe(holder)}, whose process is gone."


def previous_run_files(output_dir: str | os.PathLike) -> list[str]:
    """What a previous run left in `output_dir`: its checkpoints and model files (names, for the message)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [path.name for path in checkpoints(folder)]
    found += [name for name in MODEL_FILES if (folder / name).is_file()]
    return found


def check_previous_run(
    output_dir: str | os.PathLike,
    *,
    resume: bool,
    overwrite: bool,
    max_steps: int | None = None,
    num_train_epochs: float | None = None,
) -> list[str]:
    """Stop a new run from mixing with a previous run's work. Returns what was found (empty when nothing was).

    Raises [`PreviousRunError`] when `output_dir` holds a previous run's model or checkpoints and the run neither
    resumes nor overwrites. The message suggests resuming only when the new run (`max_steps`, else
    `num_train_epochs`) would have something left to train from the newest checkpoint that can be resumed.
    """
    found = previous_run_files(output_dir)
    if found and not resume and not overwrite:
        raise PreviousRunError(_previous_run_message(output_dir, found, max_steps, num_train_epochs))
    return found


def _previous_run_message(
    output_dir: str | os.PathLike, found: list[str], max_steps: int | None, num_train_epochs: float | None
) -> str:
    shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    start = f"The output directory {output_dir} holds a previous run ({shown})"
    anew = (
        "start over with `--overwrite_output_dir true` (its files are moved to a dated folder beside it), or choose "
        "another `output_dir`"
    )
    path, skipped = resumable_checkpoint(output_dir)
    progress = furthest_progress(output_dir, path)
    if progress is not None and not progress.left_for(max_steps, num_train_epochs):
        setting = "`max_steps`" if max_steps is not None and max_steps > 0 else "`num_train_epochs`"
        return (
            f"{start} that has reached {progress.describe_target(max_steps, num_train_epochs)}: nothing is left to "
            f"resume. To train anew, {anew}; to train it further, raise {setting} and resume it."
        )
    if path is not None and progress is not None:
        return (
            f"{start} that stopped at {progress.describe_target(max_steps, num_train_epochs)}. Continue it with "
            f"`--resume_from_checkpoint true`, or {anew}."
        )
    unusable = f": {', '.join(map(str, skipped))}" if skipped else ""
    return f"{start} and no checkpoint to resume from{unusable}. To train anew, {anew}."


def furthest_progress(output_dir: str | os.PathLike, checkpoint: Path | None) -> Progress | None:
    """How far the previous run in `output_dir` got: the checkpoint's progress, or, when the run saved its final model,
    the model's (a `trainer_state.json` saved beside it by `Trainer.save_state()`) or its newest checkpoint's, even a
    damaged one by its name, when further on: the final model was saved after them."""
    found = [Progress.read(checkpoint)] if checkpoint is not None else []
    folder = Path(output_dir)
    if final_model_file(folder) is not None:
        found.append(Progress.read(folder))
        found += [Progress.named(newest) for newest in checkpoints(folder)[-1:]]  # after `checkpoint`: it wins ties
    found = [progress for progress in found if progress is not None]
    return max(found, key=lambda progress: progress.global_step, default=None)


def move_previous_run(output_dir: str | os.PathLike) -> Path | None:
    """Move everything a previous run left in `output_dir` (but the lock) into `<output_dir>.previous-<time>` beside
    it, so that nothing of it mixes with the new run. Returns the folder, or `None` when there was nothing."""
    folder = Path(output_dir)
    items = [p for p in folder.iterdir() if p.name not in (LOCK_FILE, HOLDER_FILE)] if folder.is_dir() else []
    if not items:
        return None
    target = folder.with_name(f"{folder.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
    suffix = 1
    while target.exists():
        target = target.with_name(f"{target.name}-{suffix}")
        suffix += 1
    target.mkdir(parents=True)
    for item in items:
        shutil.move(str(item), str(target / item.name))
    return target
