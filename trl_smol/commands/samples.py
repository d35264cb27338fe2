"""`trl-smol samples`: pass rates per step from a run's `samples.jsonl`, or two runs side by side.

```bash
trl-smol samples smollm3-demo                  # one row per sample pass: pass rate, each check, stops, new tokens
trl-smol samples smollm3-demo smollm3-demo-b   # the same steps of two runs, with the difference (second - first)
```

It reads a finished run or one in progress: a line still being written (or cut short by a crash) is skipped, and
counted with its line number. The run directory is never written to.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SamplesError(Exception):
    """A run that cannot be read: the message is the one line the command prints."""


@dataclass
class Run:
    """One run's samples: its rows by step, and the lines that were not sample rows."""

    path: Path
    passes: dict[int, list[dict[str, Any]]]
    skipped: list[int]  # 1-based numbers of the lines that are not sample rows


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", help="A run's output directory (or its samples.jsonl).")
    parser.add_argument(
        "other", nargs="?", help="A second run, shown side by side at the same steps, with the difference."
    )


def run(args: argparse.Namespace) -> int:
    try:
        runs = [read_run(path) for path in (args.output_dir, args.other) if path is not None]
    except SamplesError as error:
        print(f"trl-smol samples: {error}", file=sys.stderr)
        return 1
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped to a file: rich would assume 80 columns
    if len(runs) == 1:
        title = f"Sample passes in {runs[0].path}"
    else:
        title = f"Sample passes: A = {runs[0].path}, B = {runs[1].path}; each cell A → B (B - A)"
    console.print(title, markup=False)
    console.print(pass_table(runs))
    for one in runs:
        if one.skipped:
            count = len(one.skipped)
            lines = "line is" if count == 1 else "lines are"
            numbers = ", ".join(str(number) for number in one.skipped[:5]) + (", ..." if count > 5 else "")
            note = (
                f"{one.path}: {count} {lines} not a sample row (a pass being written, or cut short): skipped "
                f"(line{'s' if count > 1 else ''} {numbers})."
            )
            console.print(note, markup=False)
        if not any(pass_scores(rows).scored for rows in one.passes.values()):
            note = (
                f"{one.path}: no checks, so no pass rates; a sample prompt's `checks` (or the recipe's "
                "`sample_checks`) score each answer (docs/samples.md)."
            )
            console.print(note, markup=False)
    return 0


def read_run(location: str | os.PathLike) -> Run:
    """A run's samples from its output dir (or its `samples.jsonl`), read only with `read_samples`: a run in
    progress, whose last line may be half written, is never touched."""
    # Imported when the command runs: this package loads torch (seconds).
    from ..samples.outputs import SAMPLES_FILE, read_samples

    path = Path(location)
    if not path.exists():
        raise SamplesError(f"{path}: no such directory.")
    if path.is_dir():
        path = path / SAMPLES_FILE
        if not path.exists():
            raise SamplesError(
                f"{path.parent} has no {SAMPLES_FILE}: the run had sample generation off. Set `sample_prompts` in "
                "the recipe (a list of prompts or a .jsonl file) to turn it on."
            )
    samples = read_samples(path)
    if not samples.rows:
        raise SamplesError(f"{path} has no sample rows yet: the first pass writes them when it finishes.")
    return Run(path=path, passes=samples.passes, skipped=samples.skipped)


def pass_scores(rows: list[dict[str, Any]]):
    from ..samples.scores import pass_scores as scores

    return scores(rows)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _side_by_side(first: tuple | None, second: tuple | None, difference: bool = True) -> str:
    """`A → B (B - A)`: the difference in percentage points for shares, plain for token counts; `-` where a run has
    no pass at that step."""
    text = f"{first[2] if first else '-'} → {second[2] if second else '-'}"
    if not difference or not first or not second or first[0] is None or second[0] is None:
        return text
    if first[1]:
        return f"{text} ({100 * (second[0] - first[0]):+.0f} pt)"
    return f"{text} ({second[0] - first[0]:+.1f})"


def _figures(
    rows: list[dict[str, Any]] | None, checks: list[str], compact: bool = False
) -> dict[str, tuple[float | None, bool, str]]:
    """A pass's figures by column key: `(value, is_a_share, text)`; a check's key is `check:<name>`. `compact`: the
    pass rate without its counts."""
    if rows is None:
        return {}
    scores = pass_scores(rows)
    rate = scores.pass_rate
    figures: dict[str, tuple[float | None, bool, str]] = {"samples": (None, False, str(scores.samples))}
    counts = f" ({scores.passed}/{scores.scored})" if scores.scored and not compact else ""
    figures["pass rate"] = (rate, True, f"{_percent(rate)}{counts}" if scores.scored else "-")
    for name in checks:
        value = scores.checks.get(name)
        figures[f"check:{name}"] = (value, True, _percent(value))
    figures["stopped"] = (scores.stopped, True, _percent(scores.stopped))
    tokens = scores.mean_new_tokens
    figures["new tokens"] = (tokens, False, "-" if tokens is None else f"{tokens:.1f}")
    return figures


def pass_table(runs: list[Run]):
    """A rich table, one row per step: the pass rate, each check, the share of samples that stopped and their mean
    new tokens; with two runs, each cell is `A → B (B - A)`, at every step either run has."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    passes = [rows for one in runs for rows in one.passes.values()]
    checks = list(dict.fromkeys(name for rows in passes for row in rows for name in (row.get("checks") or {})))
    columns = [("samples", "samples")]  # (key, header)
    if any(pass_scores(rows).scored for rows in passes):
        columns.append(("pass rate", "pass rate"))
    columns += [(f"check:{name}", name) for name in checks]
    columns += [("stopped", "stopped"), ("new tokens", "new tokens")]
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("step", justify="right", no_wrap=True)
    for _, header in columns:
        table.add_column(Text(header), justify="right")
    for step in sorted({step for one in runs for step in one.passes}):
        figures = [_figures(one.passes.get(step), checks, compact=len(runs) > 1) for one in runs]
        cells = [str(step)]
        for key, _ in columns:
            values = [figure.get(key) for figure in figures]
            if len(runs) == 1:
                cells.append(values[0][2])
            else:
                cells.append(_side_by_side(*values, difference=key != "samples"))
        table.add_row(*cells)
    return table
