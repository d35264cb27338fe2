"""Run safety: one run per output directory, no silent overwrite, resume from a complete checkpoint, and a checkpoint
when the run is stopped by SIGTERM or SIGINT.

```python
from trl_smol.run_safety import InterruptCheckpoint, OutputDirLock, check_previous_run, latest_complete_checkpoint
```
"""

from .checkpoints import checkpoint_problem, is_complete_checkpoint, latest_complete_checkpoint, resumable_checkpoint
from .interrupt import InterruptCheckpoint
from .output_dir import (
    NoCheckpointError,
    NothingToTrain,
    OutputDirBusyError,
    OutputDirLock,
    PreviousRunError,
    check_previous_run,
    describe_takeover,
    move_previous_run,
)

__all__ = [
    "InterruptCheckpoint",
    "NoCheckpointError",
    "NothingToTrain",
    "OutputDirBusyError",
    "OutputDirLock",
    "PreviousRunError",
    "check_previous_run",
    "checkpoint_problem",
    "describe_takeover",
    "is_complete_checkpoint",
    "latest_complete_checkpoint",
    "move_previous_run",
    "resumable_checkpoint",
]
