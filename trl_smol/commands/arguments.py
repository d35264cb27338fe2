"""Argument types for the `trl-smol` commands: a value out of range is an argparse error naming the flag (exit 2).

```python
parser.add_argument("--max-length", type=positive_int)   # trl-smol estimate: error: argument --max-length: ...
```
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

TRACEBACK_ENV = "TRL_SMOL_TRACEBACK"  # "1": a command's error is raised with its traceback, as Python prints any


def _number(kind: type, text: str, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if value != value:  # NaN passes every comparison below
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(int, text, "a whole number above 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text, "a whole number, 0 or more")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text, "a number above 0")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value:g}")
    return value


def probability(text: str) -> float:
    """A dropout: at least 0, below 1."""
    value = _number(float, text, "a number from 0 up to (not including) 1")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to (not including) 1, got {value:g}")
    return value


def recipe_parser():
    """The parser `trl sft` reads a recipe with: `SmolTrlParser` over TRL's SFT script dataclasses."""
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments

    from ..config import SmolSFTConfig
    from ..parser import SmolTrlParser

    return SmolTrlParser((ScriptArguments, SmolSFTConfig, ModelConfig, DatasetMixtureConfig))


def error_line(command: str, error: Exception) -> str:
    """A command's error as one line: `trl-smol render: max_length=-1 is not valid; ...`. The plugin's own errors say
    what to do in their message; another library's is named by its type."""
    own = type(error).__module__.startswith("trl_smol.")
    cause = str(error) if own and str(error) else f"{type(error).__name__}: {error}"
    return f"trl-smol {command}: " + " ".join(cause.split())


def one_line_errors(command: str):
    """Decorate a command's `run(args)`: an error ends it with [`error_line`] on stderr and exit status 2 instead of
    a traceback (`TRL_SMOL_TRACEBACK=1` raises it as it is)."""

    def decorate(run):
        @functools.wraps(run)
        def guarded(args: argparse.Namespace, *more, **kwargs) -> int:
            try:
                return run(args, *more, **kwargs)
            except Exception as error:  # noqa: BLE001 - every failure of the command is reported, in one line
                if os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
                    raise
                print(error_line(command, error), file=sys.stderr, flush=True)
                return 2

        return guarded

    return decorate
