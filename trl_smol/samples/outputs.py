"""Where samples go: `output_dir/samples.jsonl`, a console table, and the trackio / wandb tables.

`samples.jsonl` is append-only and flushed (and fsynced) after each pass. A resumed run reads the steps already
written so that it does not repeat them; a fresh run that finds an old file moves it aside first.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.utils import logging

from ..console import write

logger = logging.get_logger(__name__)

SAMPLES_FILE = "samples.jsonl"
TABLE_COLUMNS = ["step", "prompt", "completion", "thinking", "enable_thinking", "num_new_tokens", "stopped", "passed"]


class SampleOutputs:
    """The outputs of one run's sample passes; `history` holds every row written, for the tracker tables."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / SAMPLES_FILE
        self.history: list[dict[str, Any]] = []
        self._console = None

    def load_written_steps(self, state) -> set[int]:
        """Steps already in `samples.jsonl` when resuming, shared by all processes so they skip the same passes."""
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list

        loaded: list[Any] = [set(), []]
        if state.is_world_process_zero and self.path.exists():
            if state.global_step == 0:
                # A fresh run in an old output_dir: keep the old samples, but not in this run's file.
                moved = self.path.with_suffix(f".{int(time.time())}.jsonl")
                self.path.rename(moved)
                logger.warning(f"{self.path} is from an earlier run that this one does not resume: moved to {moved}.")
            else:
                written = read_samples(self.path, repair=True)
                loaded = [written.steps, written.rows]
        if PartialState().num_processes > 1:
            broadcast_object_list(loaded, from_process=0)
        self.history = loaded[1]
        return loaded[0]

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            for row in rows:
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.history.extend(rows)

    def show(
        self, rows: list[dict[str, Any]], step: int, seconds: float, scores: dict[str, float] | None = None
    ) -> None:
        """The pass as a table; with checks, a `check` column (pass, or the checks that failed) and the pass rates."""
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        if self._console is None:
            self._console = Console()
            if not self._console.is_terminal and "COLUMNS" not in os.environ:
                self._console.width = 160  # a log file has no width; rich would assume 80 columns
        title = f"Samples at step {step} ({seconds:.1f}s)"
        scored = [row for row in rows if row.get("passed") is not None]
        if scored:
            title += f": {sum(bool(row['passed']) for row in scored)}/{len(scored)} passed"
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left")
        if scores:
            each = ", ".join(f"{key} {value:.0%}" for key, value in scores.items() if key != "pass_rate")
            table.caption = f"pass rate {scores['pass_rate']:.0%} ({each})"
        table.add_column("step", justify="right")
        table.add_column("prompt", max_width=40, overflow="fold")
        table.add_column("answer", overflow="fold")
        table.add_column("think", justify="right")
        table.add_column("tokens", justify="right")
        table.add_column("end")
        if scored:
            table.add_column("check")
        for row in rows:
            answer = row["completion"] if len(row["completion"]) <= 300 else row["completion"][:300] + "…"
            thinking = "-" if row["thinking"] is None else f"{len(row['thinking'])} ch"
            end = "stop" if row["stopped"] else "limit"
            cells = [str(step), row["prompt"], answer, thinking, str(row["num_new_tokens"]), end]
            table.add_row(*cells, *([_verdict(row, Text)] if scored else []))
        write(table, console=self._console)  # above the progress bar, not onto it

    def report(
        self, args, rows: list[dict[str, Any]], step: int, seconds: float, scores: dict[str, float] | None = None
    ) -> None:
        """Tables with every pass so far, `samples/seconds`, `samples/prompts` and the pass rates (`samples/pass_rate`,
        `samples/<check>`), to the trackers in `report_to` with a run open, at the pass's `train/global_step`: the
        x-axis of the trainer's own metrics, so the rates plot over steps beside the loss."""
        report_to = args.report_to if isinstance(args.report_to, list) else [args.report_to]
        data = [[row.get(column) for column in TABLE_COLUMNS] for row in self.history]
        # `samples/prompts`: how many the pass answered (under `sample_budget`, the leading ones; all at the end)
        metrics_for = {"samples/seconds": round(seconds, 3), "samples/prompts": len(rows), "train/global_step": step}
        metrics_for.update({f"samples/{key}": value for key, value in (scores or {}).items()})
        for name in ("trackio", "wandb"):
            if name not in report_to and "all" not in report_to:
                continue
            try:
                if name == "trackio":
                    import trackio

                    if trackio.context_vars.current_run.get() is not None:
                        trackio.log({"samples": trackio.Table(columns=TABLE_COLUMNS, data=data), **metrics_for})
                else:
                    import wandb

                    if wandb.run is not None:
                        wandb.log({"samples": wandb.Table(columns=TABLE_COLUMNS, data=data), **metrics_for})
            except Exception as error:  # noqa: BLE001 - a tracker hiccup must not end training
                logger.warning(f"Could not log samples of step {step} to {name}: {error}")


def _verdict(row: dict[str, Any], text: Any) -> Any:
    """`pass`, `FAIL: <failed checks>` or `-` (no checks), coloured on a terminal and plain in a log file."""
    from .checks import passes

    if row.get("passed") is None:
        return text("-")
    if row["passed"]:
        return text("pass", style="green")
    failed = [key for key, result in row["checks"].items() if not passes(result)]
    return text("FAIL: " + ", ".join(failed), style="red")


@dataclass
class SampleRows:
    """What `samples.jsonl` holds: its sample rows in file order, and the 1-based numbers of the lines that are not
    sample rows (a line being written, or cut short by a crash)."""

    path: Path
    rows: list[dict[str, Any]]
    skipped: list[int]

    @property
    def steps(self) -> set[int]:
        return {int(row["step"]) for row in self.rows}

    @property
    def passes(self) -> dict[int, list[dict[str, Any]]]:
        """The rows by step, in step order."""
        passes: dict[int, list[dict[str, Any]]] = {}
        for row in self.rows:
            passes.setdefault(int(row["step"]), []).append(row)
        return dict(sorted(passes.items()))


def read_samples(path: str | os.PathLike, *, repair: bool = False) -> SampleRows:
    """The one reader of a samples file. A line that is not a sample row (a JSON object with a `step`) is
    skipped; blank lines are ignored. Read only by default, for a run in progress or finished: its skipped lines are
    only returned, as a last line half written is expected there. `repair` (the run that resumes, and appends to the
    file): a skipped line is logged with its number, and a last line cut short is ended, so that the next row starts
    on its own line."""
    path = Path(path)
    data = path.read_bytes()
    if repair and data and not data.endswith(b"\n"):
        with path.open("ab") as file:
            file.write(b"\n")
    rows: list[dict[str, Any]] = []
    skipped: list[int] = []
    # Lines end at "\n" only: a row's text may hold U+2028 or other characters that `str.splitlines` breaks at.
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            int(row["step"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            skipped.append(number)
            if repair:
                logger.warning(f"{path}:{number} is not a sample row (cut short by a crash?); skipped.")
            continue
        rows.append(row)
    return SampleRows(path, rows, skipped)
