"""Checkpoints in an output dir: which one a run can resume from, and how far the run it belongs to had got.

```python
from trl_smol.run_safety.checkpoints import Progress, checkpoint_problem, resumable_checkpoint

path, skipped = resumable_checkpoint("smollm3-sft")      # the newest one that can be resumed; the newer ones skipped
skipped[0].problem     # "trainer_state.json is cut short (not valid JSON)", "adapter_model.safetensors is empty"
checkpoint_problem(Path("smollm3-sft/checkpoint-40"))   # None when it can be resumed
Progress.read(path).left_for(max_steps=2000, num_train_epochs=3.0)   # whether a resume has anything to train
```

A checkpoint is checked cheaply, without loading a tensor: `trainer_state.json` parses and has a step; each
safetensors file's header (8 bytes of length, then JSON) is read and the file's size compared with the end of its
last tensor; the torch files a resume loads (`optimizer.pt`, ...) are not empty and end as a zip archive does. A save
cut short (SIGKILL, a full disk, a copy interrupted) fails one of these checks, and the resume would otherwise end in a
`JSONDecodeError` or `SafetensorError` that names no file.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

STATE_FILE = "trainer_state.json"
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "pytorch_model.bin",
    "pytorch_model.bin.index.json", "adapter_model.bin",
)  # fmt: skip
# Files `Trainer` loads on resume with `torch.load` (zip archives since torch 1.6), when the checkpoint has them.
TORCH_FILES = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth|training_args\.bin)$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_MAX_HEADER = 100_000_000  # safetensors' own limit on the size of a header


class Skipped(NamedTuple):
    """A checkpoint that cannot be resumed, and why (naming the file)."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path.name} ({self.problem})"


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """`checkpoint-N` folders, by step."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [path for _, path in sorted(found)]


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step in a `checkpoint-N` folder's name (what a damaged checkpoint still tells)."""
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def final_model_file(output_dir: str | os.PathLike) -> str | None:
    """The weights file of a final model saved in `output_dir` itself (after training), if any."""
    return next((name for name in WEIGHT_FILES if (Path(output_dir) / name).is_file()), None)


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a run cannot resume from the checkpoint folder `path`, naming the file; `None` when it can."""
    path = Path(path)
    if not path.is_dir():
        return "not a folder"
    _, problem = read_state(path)
    if problem is not None:
        return problem
    weights = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not weights:
        return f"no weights, none of {', '.join(WEIGHT_FILES[:4])}, ...: a save cut short"
    for name in weights:
        problem = _weights_problem(path, name)
        if problem is not None:
            return problem
    for file in sorted(path.iterdir()):
        if TORCH_FILES.match(file.name) and file.is_file():
            problem = _torch_file_problem(file)
            if problem is not None:
                return problem
    return None


def resumable_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[Skipped]]:
    """The newest checkpoint a run can resume from, and the newer ones that cannot, each with its problem."""
    skipped: list[Skipped] = []
    for path in reversed(checkpoints(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(Skipped(path, problem))
    return None, skipped


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint a run can resume from: its trainer state and its weights are there and whole."""
    return checkpoint_problem(path) is None


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint, and the newer ones skipped because they are incomplete or corrupt."""
    path, skipped = resumable_checkpoint(output_dir)
    return path, [entry.path for entry in skipped]


def read_state(folder: Path) -> tuple[dict | None, str | None]:
    """`folder/trainer_state.json` as a dict, or what is wrong with it."""
    file = folder / STATE_FILE
    try:
        text = file.read_bytes()
    except FileNotFoundError:
        return None, f"no {STATE_FILE}: a save cut short"
    except OSError as error:
        return None, f"{STATE_FILE} cannot be read: {error.strerror}"
    if not text.strip():
        return None, f"{STATE_FILE} is empty, {len(text)} bytes"
    try:
        state = json.loads(text)
    except ValueError:
        return None, f"{STATE_FILE} is cut short or damaged: not valid JSON, {len(text)} bytes"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return None, f"{STATE_FILE} has no `global_step`"
    return state, None


def _weights_problem(folder: Path, name: str) -> str | None:
    file = folder / name
    if name.endswith(".safetensors"):
        return safetensors_problem(file)
    if name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(file.read_bytes())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{name} is cut short or damaged: no `weight_map`"
        for shard in shards:
            if not (folder / shard).is_file():
                return f"{shard}, listed in {name}, is missing"
            problem = safetensors_problem(folder / shard) if shard.endswith(".safetensors") else None
            problem = problem or (_torch_file_problem(folder / shard) if shard.endswith(".bin") else None)
            if problem is not None:
                return problem
        return None
    return _torch_file_problem(file)


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a safetensors file, from its header and size alone (no tensor is read)."""
    size = file.stat().st_size
    if size == 0:
        return f"{file.name} is empty, 0 bytes"
    with file.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{file.name} is cut short: {size} bytes, no header"
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER):
            return f"{file.name} is cut short: its header says {length} bytes, the file has {size}"
        try:
            header = json.loads(handle.read(length))
            end = max([entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"] or [0])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return f"{file.name} has a damaged header: not the JSON of a safetensors file"
    expected = 8 + length + end
    if size != expected:
        return f"{file.name} is cut short or damaged: {size} bytes where its header says {expected}"
    return None


def _torch_file_problem(file: Path) -> str | None:
    size = file.stat().st_size
    if size == 0:
        return f"{file.name} is empty, 0 bytes"
    if not zipfile.is_zipfile(file):  # a torch.save archive ends with the zip directory: a cut file has none
        return f"{file.name} is cut short or damaged: {size} bytes, not a complete torch archive"
    return None


@dataclass(frozen=True)
class Progress:
    """How far the run that saved a checkpoint had got, from its `trainer_state.json`."""

    path: Path
    global_step: int
    max_steps: int  # the steps that run was to train (computed from its epochs when it trained by epochs)
    epoch: float
    num_train_epochs: float

    @classmethod
    def read(cls, folder: str | os.PathLike) -> Progress | None:
        state, _ = read_state(Path(folder))
        if state is None:
            return None
        try:
            return cls(
                Path(folder),
                state["global_step"],
                int(state.get("max_steps") or 0),
                float(state.get("epoch") or 0.0),
                float(state.get("num_train_epochs") or 0.0),
            )
        except (TypeError, ValueError):  # a state JSON that Trainer did not write: no progress to compare with
            return None

    @classmethod
    def named(cls, folder: str | os.PathLike) -> Progress | None:
        """What a `checkpoint-N` folder's name alone tells (step N), for one whose state cannot be read."""
        step = checkpoint_step(folder)
        return None if step is None else cls(Path(folder), step, 0, 0.0, 0.0)

    @property
    def ended(self) -> bool:
        """Whether its own run had trained all its steps when it saved this checkpoint."""
        return 0 < self.max_steps <= self.global_step

    def left_for(self, max_steps: int | None = None, num_train_epochs: float | None = None) -> bool:
        """Whether a run with these settings has anything left to train from here: steps below `max_steps` when it
        is set (> 0), else epochs below `num_train_epochs`, as `Trainer` counts them; without either, whether its
        own run had steps left."""
        if max_steps is not None and max_steps > 0:
            return self.global_step < max_steps
        if num_train_epochs is not None:
            return self.epoch + 1e-6 < num_train_epochs
        return not self.ended

    def describe_target(self, max_steps: int | None, num_train_epochs: float | None) -> str:
        """Where it stands against those settings, for a message: `step 2, and max_steps is 2`."""
        if max_steps is not None and max_steps > 0:
            return f"step {self.global_step}, and `max_steps` is {max_steps}"
        if num_train_epochs is not None:
            return f"epoch {self.epoch:g} (step {self.global_step}), and `num_train_epochs` is {num_train_epochs:g}"
        return f"step {self.global_step} of its {self.max_steps}"
