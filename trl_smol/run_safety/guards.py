"""What `SmolSFTTrainer` does with the output dir and an interruption, in the words a user reads.

```python
lock = take_output_dir(args, run_id)              # main process only; None on the other ranks
guard_output_dir(args, resume=False)              # PreviousRunError, or move the old run aside with overwrite
path = resume_path(args, True)                    # the newest complete checkpoint; NothingToTrain if done
```
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from transformers.utils import logging

from ..distributed import wait_for_every_rank
from ..launch import report_failure
from ..preemption import STOPPED_PREFIX, exit_status
from .checkpoints import Progress, checkpoint_problem, final_model_file, resumable_checkpoint
from .interrupt import InterruptCheckpoint
from .output_dir import (
    NoCheckpointError,
    NothingToTrain,
    OutputDirLock,
    check_previous_run,
    describe_takeover,
    furthest_progress,
    move_previous_run,
)

logger = logging.get_logger(__name__)


def _is_main(args: Any) -> bool:
    return getattr(args, "process_index", 0) == 0


def take_output_dir(args: Any, run_id: str) -> OutputDirLock | None:
    """Lock `args.output_dir` for this run (main process only: the other ranks share it)."""
    if not _is_main(args) or not args.output_dir:
        return None
    lock = OutputDirLock(args.output_dir, run_id).acquire()
    if lock.took_over:
        print(describe_takeover(lock.took_over), file=sys.stderr, flush=True)
    return lock


def guard_output_dir(args: Any, *, resume: bool) -> None:
    """Stop a new run from mixing with a previous run in `args.output_dir`, or move that run aside when
    `overwrite_output_dir` asks for it (main process; every process checks)."""
    overwrite = bool(getattr(args, "overwrite_output_dir", False))
    max_steps, epochs = _target(args)
    found = check_previous_run(
        args.output_dir, resume=resume, overwrite=overwrite, max_steps=max_steps, num_train_epochs=epochs
    )
    if found and overwrite and not resume and _is_main(args):
        moved = move_previous_run(args.output_dir)
        print(
            f"trl-smol: overwrite_output_dir: the previous run in {args.output_dir} ({', '.join(found[:4])}, ...: "
            f"checkpoints, model, samples and logs) was moved to {moved}.",
            file=sys.stderr,
            flush=True,
        )


def _target(args: Any) -> tuple[int | None, float | None]:
    """What the run is set to train: `max_steps` (when > 0, it wins, as in `Trainer`), else `num_train_epochs`."""
    return getattr(args, "max_steps", None), getattr(args, "num_train_epochs", None)


def _say(args: Any, line: str) -> None:
    if _is_main(args):
        print(line, file=sys.stderr, flush=True)


def resume_path(args: Any, resume_from_checkpoint: str | bool = True) -> str:
    """The checkpoint a resume starts from, after one line saying what the resume does: for `True` the newest one
    that can be resumed (newer ones cut short or damaged are named and skipped), else the folder given, checked.

    Raises [`NothingToTrain`] (exit status 0) when the run has already reached its `max_steps` (or
    `num_train_epochs`): `Trainer` would train one more step and the script would replace the finished model. Raises
    [`NoCheckpointError`] when no checkpoint can be resumed, naming each one and its problem.
    """
    output_dir = args.output_dir
    max_steps, epochs = _target(args)
    if resume_from_checkpoint is True:
        path, skipped = resumable_checkpoint(output_dir)
        progress = furthest_progress(output_dir, path)
    else:
        path, skipped = Path(resume_from_checkpoint), []
        problem = checkpoint_problem(path)
        if problem is not None:
            raise NoCheckpointError(f"Cannot resume from {path}: {problem}. {_ANEW}")
        progress = Progress.read(path)
    damaged = next((entry for entry in skipped if progress is not None and entry.path == progress.path), None)
    if progress is not None and not progress.left_for(max_steps, epochs):
        setting = "`max_steps`" if max_steps is not None and max_steps > 0 else "`num_train_epochs`"
        where = str(progress.path)
        if damaged is not None:  # known from its name only: the final model was saved after it
            where = f"{output_dir} holds the final model ({final_model_file(output_dir)}), saved after {damaged}; it"
        message = (
            f"trl-smol: nothing left to train: {where} is at {progress.describe_target(max_steps, epochs)}; "
            f"nothing was changed. To train it further, raise {setting} and resume again; to train anew, "
            "use `--overwrite_output_dir true` (moves this run aside) or another `output_dir`."
        )
        _say(args, message)
        raise NothingToTrain(message)
    if path is None:
        if skipped:
            unusable = ", ".join(map(str, skipped))
            raise NoCheckpointError(f"No complete checkpoint to resume from in {output_dir}: {unusable}. {_ANEW}")
        raise NoCheckpointError(f"No checkpoint to resume from in {output_dir}. {_ANEW}")
    line = _resuming(path, skipped, max_steps, epochs)
    if progress is not None and progress.path != path:
        # `furthest_progress` prefers `path` on a tie: the final model is further on, the steps between are trained
        # again, and the new model replaces it
        line = (
            line[:-1]
            + f"; the final model in {output_dir} ({final_model_file(output_dir)}) is replaced when this run ends."
        )
    _say(args, line)
    return str(path)


_ANEW = (
    "Resume from another checkpoint folder with `--resume_from_checkpoint PATH`, or train anew with "
    "`--overwrite_output_dir true` (moves this run aside) or another `output_dir`."
)


def _resuming(path: Path, skipped: list, max_steps: int | None, epochs: float | None) -> str:
    """`trl-smol: resuming from X/checkpoint-2 at step 2 of 4; skipped checkpoint-3 (no trainer_state.json: ...)`"""
    progress = Progress.read(path)
    by_steps = max_steps is not None and max_steps > 0
    line = f"trl-smol: resuming from {path} at step {progress.global_step}"
    if progress.ended:  # its own run had finished: this one goes on because max_steps / num_train_epochs was raised
        was = f"max_steps {progress.max_steps}" if by_steps else f"epoch {progress.epoch:g}"
        now = f"`max_steps` is {max_steps}" if by_steps else f"`num_train_epochs` is {epochs:g}"
        line += f", where its run ended ({was}); {now} now: training on"
    elif by_steps:
        line += f" of {max_steps}"
    elif epochs is not None:
        line += f" (epoch {progress.epoch:g} of {epochs:g})"
    if skipped:
        line += f"; skipped {', '.join(map(str, skipped))}"
    return line + "."


def stop_after_interrupt(args: Any, interrupt: InterruptCheckpoint) -> None:
    """Exit with 128 + the signal after a run stopped by one, with one line: where the checkpoint is and how to
    resume. In a distributed run every rank waits for the others first, so none exits while rank 0 still saves (a
    launcher stops the other ranks when one exits)."""
    stopped = interrupt.signal if interrupt.signal is not None else signal.SIGTERM
    message = (
        f"{STOPPED_PREFIX}{stopped.name} at step {interrupt.step}; checkpoint saved in "
        f"{args.output_dir}/checkpoint-{interrupt.step}. Resume with the same command and "
        "`--resume_from_checkpoint true`."
    )
    wait_for_every_rank()
    if _is_main(args) and not report_failure(message):  # under `trl sft`, its process prints the line last
        print(message, file=sys.stderr, flush=True)
    raise SystemExit(exit_status(stopped))


class RunGuard:
    """The output dir and interruption guard of one trainer: the lock taken before the model loads, the check for a
    previous run (before loading under `trl sft`, which passes `resume_from_checkpoint` in the arguments; at `train()`
    in Python), the checkpoint on SIGTERM / SIGINT, and the lock released at the end.

    ```python
    guard = RunGuard(args, run_id, check_now=True, save_on_interrupt=True)   # before the model loads
    resume = guard.before_train(args, resume_from_checkpoint)              # in train()
    guard.after_train(args)                                                # exits 128+signal after an interruption
    guard.release()                                                        # in end()
    ```
    """

    def __init__(self, args: Any, run_id: str, *, check_now: bool, save_on_interrupt: bool):
        self.lock = take_output_dir(args, run_id)
        self.checked = check_now
        self.resumed: tuple[str | bool, str] | None = None  # (what was asked, the checkpoint it resolved to)
        if check_now:
            try:
                self._check(args, args.resume_from_checkpoint)
            except BaseException:  # stopped before the model loads (NothingToTrain included): the lock goes too
                self.release()
                raise
        self.interrupt = InterruptCheckpoint() if save_on_interrupt else None

    def before_train(self, args: Any, resume_from_checkpoint: str | bool | None) -> str | bool | None:
        """Check the output dir if that was left to `train()`, and resolve a resume to the checkpoint it starts from
        (`True`: the newest complete one), or stop with [`NothingToTrain`] when the run has nothing left to train."""
        if not self.checked:
            self._check(args, resume_from_checkpoint)
            self.checked = True
        if not resume_from_checkpoint:
            return resume_from_checkpoint
        resumed, self.resumed = self.resumed, None  # resolved before loading: once (a second train() looks again)
        if resumed is not None and resumed[0] == resume_from_checkpoint:
            return resumed[1]
        return resume_path(args, resume_from_checkpoint)

    def _check(self, args: Any, resume_from_checkpoint: str | bool | None) -> None:
        guard_output_dir(args, resume=bool(resume_from_checkpoint))
        if resume_from_checkpoint:
            self.resumed = (resume_from_checkpoint, resume_path(args, resume_from_checkpoint))

    def after_train(self, args: Any) -> None:
        if self.interrupt is not None and self.interrupt.signal is not None:
            stop_after_interrupt(args, self.interrupt)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
