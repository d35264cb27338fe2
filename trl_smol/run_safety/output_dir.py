"""The output directory of a run: one run at a time, no silent overwrite, resume from a complete checkpoint.

```python
from trl_smol.run_safety import OutputDirLock, check_previous_run, latest_complete_checkpoint

lock = OutputDirLock("smollm3-sft", run_id="20261129-221500-3f2a").acquire()   # OutputDirBusyError if in use
check_previous_run("smollm3-sft", resume=False, overwrite=False)             # PreviousRunError if a run is there
path, skipped = latest_complete_checkpoint("smollm3-sft")                    # skips checkpoints cut short
```

The lock is an OS file lock (`filelock`) on `output_dir/.trl_smol.lock`, so the operating system releases it when
the process dies, however it dies; `output_dir/.trl_smol_run.json` says who holds it (process, host, run id, start
time), for the error a second run gets and for the notice when a run takes over a lock whose holder is gone.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".trl_smol.lock"
HOLDER_FILE = ".trl_smol_run.json"
# What a finished or checkpointed run leaves: any of these in the output dir is a previous run's work.
MODEL_FILES = ("config.json", "adapter_config.json", "model.safetensors", "adapter_model.safetensors")
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "pytorch_model.bin",
    "pytorch_model.bin.index.json", "adapter_model.bin",
)  # fmt: skip
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class OutputDirBusyError(RuntimeError):
    """Another run holds the output directory."""


class PreviousRunError(RuntimeError):
    """The output directory holds a previous run's model or checkpoints; the run neither resumes nor overwrites."""


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

    def acquire(self) -> OutputDirLock:
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


def _describe(holder: dict) -> str:
    where = f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
    return f"run {holder.get('run')} ({where})"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def describe_takeover(holder: dict) -> str:
    return f"trl-smol: took over the output-directory lock of {_describe(holder)}, whose process is gone."


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """`checkpoint-N` folders, by step."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [path for _, path in sorted(found)]


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint a run can resume from: its trainer state and its weights are there."""
    return (path / "trainer_state.json").is_file() and any((path / name).is_file() for name in WEIGHT_FILES)


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint, and the newer ones skipped because they are incomplete (a save cut short)."""
    skipped: list[Path] = []
    for path in reversed(checkpoints(output_dir)):
        if is_complete_checkpoint(path):
            return path, skipped
        skipped.append(path)
    return None, skipped


def previous_run_files(output_dir: str | os.PathLike) -> list[str]:
    """What a previous run left in `output_dir`: its checkpoints and model files (names, for the message)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [path.name for path in checkpoints(folder)]
    found += [name for name in MODEL_FILES if (folder / name).is_file()]
    return found


def check_previous_run(output_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> list[str]:
    """Stop a new run from mixing with a previous run's work. Returns what was found (empty when nothing was).

    Raises [`PreviousRunError`] when `output_dir` holds a previous run's model or checkpoints and the run neither
    resumes nor overwrites.
    """
    found = previous_run_files(output_dir)
    if found and not resume and not overwrite:
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise PreviousRunError(
            f"The output directory {output_dir} holds a previous run ({shown}). Continue it with "
            "`--resume_from_checkpoint true`, or start over with `--overwrite_output_dir true` (its files are moved "
            "to a dated folder beside it), or choose another `output_dir`."
        )
    return found


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
