"""Stopping on SIGTERM, SIGINT or SIGUSR1 with a checkpoint, as a preempted cluster job needs.

[`InterruptCheckpoint`] is a `TrainerCallback`. While training runs it handles the stop signals
(`trl_smol.preemption.STOP_SIGNALS`): the first one asks for a checkpoint at the end of the current optimizer step and
stops the run there (every rank agrees on the step, so a distributed save never waits for a rank that did not hear the
signal); nothing else runs after it (no sample pass: the grace period is for the checkpoint); a second signal more than
a second later has the default effect at once. The same signal arriving twice within a second (a process-group signal
reaches the training process directly and again through `trl sft`) counts once.

How long a stop takes is the rest of the step plus the save; the callback measures both and warns once when they add
up to more than the 30 s that Kubernetes and SLURM give by default between their signal and SIGKILL.

```python
from trl_smol.run_safety import InterruptCheckpoint

interrupt = InterruptCheckpoint()
trainer = Trainer(..., callbacks=[interrupt])
trainer.train()               # on SIGTERM: checkpoint-N saved, then training stops
if interrupt.signal:          # the run was interrupted: exit 128 + signal, telling how to resume
    ...
```
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from transformers import TrainerCallback
from transformers.utils import logging

from ..preemption import DEFAULT_GRACE_SECONDS, SAME_SIGNAL_SECONDS, STOP_SIGNALS, record_stop_signal

logger = logging.get_logger(__name__)


class InterruptCheckpoint(TrainerCallback):
    """Save a checkpoint at the end of the current step and stop when the process gets a stop signal (SIGTERM,
    SIGINT, SIGUSR1).

    After training, `signal` is the signal that stopped the run (`None` if none did) and `step` the step it stopped
    at; `longest_step` and `longest_save` are what a stop needed so far (seconds). Only the `TrainerCallback` API is
    used: the callback sets `control.should_save` and `control.should_training_stop`. Other callbacks learn of the
    stop from `trl_smol.preemption.stop_signal()`.

    Args:
        grace_seconds: the time a scheduler leaves between its signal and SIGKILL; a run whose step plus save takes
            longer is warned once.
    """

    def __init__(self, grace_seconds: float = DEFAULT_GRACE_SECONDS):
        self.signal: signal.Signals | None = None
        self.step: int | None = None
        self.grace_seconds = grace_seconds
        self.longest_step = 0.0  # seconds, measured
        self.longest_save = 0.0
        self._received_at: float | None = None
        self._previous: dict[int, Any] = {}
        self._step_started: float | None = None
        self._save_started: float | None = None
        self._warned = False

    def on_train_begin(self, args, state, control, **kwargs):
        record_stop_signal(None)
        if threading.current_thread() is not threading.main_thread():
            return  # Python only delivers signals to the main thread
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        now = time.monotonic()
        if self._received_at is not None:
            if now - self._received_at < SAME_SIGNAL_SECONDS:
                return  # the same interruption, delivered twice
            self._restore()  # a second interruption: the default effect, now
            signal.raise_signal(number)
            return
        self._received_at = now
        self.signal = signal.Signals(number)
        record_stop_signal(number)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self.longest_step = max(self.longest_step, time.monotonic() - self._step_started)
        if _any_rank(self.signal is not None):
            self.signal = self.signal or signal.SIGTERM  # a rank that did not hear it stops with the others
            record_stop_signal(self.signal)
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        if control.should_save:
            self._save_started = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        if self._save_started is not None:
            self.longest_save = max(self.longest_save, time.monotonic() - self._save_started)
            self._save_started = None
        needed = self.longest_step + self.longest_save
        if not self._warned and self.signal is None and needed > self.grace_seconds:
            self._warned = True
            logger.warning(
                f"A stop signal needs up to {needed:.0f} s here to end with a checkpoint (a step of "
                f"{self.longest_step:.0f} s and a save of {self.longest_save:.0f} s), more than the "
                f"{self.grace_seconds:.0f} s Kubernetes and SLURM give by default: raise the grace period "
                "(terminationGracePeriodSeconds, KillWait) or signal ahead (sbatch --signal=USR1@SECONDS)."
            )

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def _any_rank(flag: bool) -> bool:
    """Whether any process of the run has the flag: one small all-reduce per step in a distributed run."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
