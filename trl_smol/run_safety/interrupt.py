"""Stopping on SIGTERM or SIGINT with a checkpoint, as a preempted cluster job needs.

[`InterruptCheckpoint`] is a `TrainerCallback`. While training runs it handles SIGTERM and SIGINT: the first signal
asks for a checkpoint at the end of the current optimizer step and stops the run there (every rank agrees on the step,
so a distributed save never waits for a rank that did not hear the signal); a second signal more than a second later
has the default effect at once. The same signal arriving twice within a second (a terminal's Ctrl-C reaches both the
`trl sft` process, which forwards it, and the training process) counts once.

```python
from trl_smol.run_safety import InterruptCheckpoint

trainer = Trainer(..., callbacks=[InterruptCheckpoint()])
trainer.train()               # on SIGTERM: checkpoint-N saved, then training stops
if trainer_callback.signal:   # the run was interrupted: exit non-zero, telling how to resume
    ...
```
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from transformers import TrainerCallback

HANDLED = (signal.SIGTERM, signal.SIGINT)
SAME_SIGNAL_SECONDS = 1.0


class InterruptCheckpoint(TrainerCallback):
    """Save a checkpoint at the end of the current step and stop when the process gets SIGTERM or SIGINT.

    After training, `signal` is the signal that stopped the run (`None` if none did) and `step` the step it stopped
    at. Only the `TrainerCallback` API is used: the callback sets `control.should_save` and
    `control.should_training_stop`.
    """

    def __init__(self):
        self.signal: signal.Signals | None = None
        self.step: int | None = None
        self._received_at: float | None = None
        self._previous: dict[int, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return  # Python only delivers signals to the main thread
        for number in HANDLED:
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

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank(self.signal is not None):
            self.signal = self.signal or signal.SIGTERM  # a rank that did not hear it stops with the others
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True

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
