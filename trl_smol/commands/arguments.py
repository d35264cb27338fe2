"""Argument types for the `trl-smol` commands: a value out of range is an argparse error naming the flag (exit 2).

```python
parser.add_argument("--max-length", type=positive_int)   # trl-smol estimate: error: argument --max-length: ...
```
"""

from __future__ import annotations

import argparse


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
