"""What `SmolSFTTrainer` does with the output dir and an interruption, in the words a user reads.

```python
lock = take_output_dir(args, run_id)              # main process only; None on the other ranks
guard_output_dir(args, resume=False)              # PreviousRunError, or move the old run aside with overwrite
path = resume_path(args.output_dir)               # the newest complete checkpoint, skipped ones named
```
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from transformers.utils import logging

from ..launch import report_failure
from .interrupt import InterruptCheckpoint
from .output_dir import (
    OutputDirLock,
    check_previous_run,
    describe_takeover,
    latest_complete_checkpoint,
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
    found = check_previous_run(args.output_dir, resume=resume, overwrite=overwrite)
    if found and overwrite and not resume and _is_main(args):
        moved = move_previous_run(args.output_dir)
        print(
            f"trl-smol: overwrite_output_dir: the previous run in {args.output_dir} ({', '.join(found[:4])}, ...: "
            f"checkpoints, model, samples and logs) was moved to {moved}.",
            file=sys.stderr,
            flush=True,
        )


def resume_path(output_dir: str) -> str:
    """The checkpoint `resume_from_checkpoint=True` resumes from: the newest complete one."""
    path, skipped = latest_complete_checkpoint(output_dir)
    names = ", ".join(p.name for p in skipped)
    if path is None:
        found = f" ({names}: incomplete, a save cut short)" if skipped else ""
        raise FileNotFoundError(
            f"No complete checkpoint to resume from in {output_dir}{found}. Start the run without "
            "`--resume_from_checkpoint`, or point it to a checkpoint folder."
        )
    if skipped:
        logger.warning(f"Resuming from {path.name}; skipped {names}: incomplete (trainer state or weights missing).")
    return str(path)


def stop_after_interrupt(args: Any, interrupt: InterruptCheckpoint) -> None:
    """Exit non-zero after a run stopped by a signal, with one line: where the checkpoint is and how to resume."""
    name = interrupt.signal.name if interrupt.signal is not None else "a signal"
    message = (
        f"trl-smol: stopped by {name} at step {interrupt.step}; checkpoint saved in "
        f"{args.output_dir}/checkpoint-{interrupt.step}. Resume with the same command and "
        "`--resume_from_checkpoint true`."
    )
    report_failure(message)
    print(message, file=sys.stderr, flush=True)
    number = interrupt.signal.value if interrupt.signal is not None else signal.SIGTERM.value
    raise SystemExit(128 + number)


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
        if check_now:
            guard_output_dir(args, resume=bool(args.resume_from_checkpoint))
        self.interrupt = InterruptCheckpoint() if save_on_interrupt else None

    def before_train(self, args: Any, resume_from_checkpoint: str | bool | None) -> str | bool | None:
        """Check the output dir if that was left to `train()`, and resolve `True` to the newest complete checkpoint."""
        if not self.checked:
            guard_output_dir(args, resume=bool(resume_from_checkpoint))
            self.checked = True
        if resume_from_checkpoint is True:
            return resume_path(args.output_dir)
        return resume_from_checkpoint

    def after_train(self, args: Any) -> None:
        if self.interrupt is not None and self.interrupt.signal is not None:
            stop_after_interrupt(args, self.interrupt)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
