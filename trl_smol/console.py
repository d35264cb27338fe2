"""The console of a run where the plugin is active: no warning the user cannot act on, a line before every long step,
and nothing printed onto the progress bar.

The plugin is active in every `trl sft` run, and in Python where `SmolSFTTrainer`'s banner lists a feature; with
default settings in Python the console stays TRL's. Everything here is scoped to a block of the run: a
`warnings.catch_warnings()` block, never a filter for the whole process, and no change to another library.

```python
from trl_smol.console import quiet_known_warnings, step

with quiet_known_warnings(user_settings={"learning_rate"}):
    step("Loading the model HuggingFaceTB/SmolLM3-3B-Base (lora)")
    ...  # warnings of KNOWN_WARNINGS are not shown; any other one is printed above the progress bar
```

Progress stays transformers' tqdm bar with its log lines (TRL's `RichProgressCallback` shows only the last log, and
nothing at all until the end when the output is a pipe or a file). What the plugin prints during a run goes above that
bar through [`write`], so that no line is glued onto it.

Standard library only at import: [`trl_smol.hook`] calls [`step`] at the start of both `trl sft` processes, before
torch and transformers are loaded. rich and tqdm are imported when something is printed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

LINE_PREFIX = "⏳ "  # TRL's own lines have one too: "✅ Training completed.", "💾 Model saved to ..."


@dataclass(frozen=True)
class KnownWarning:
    """A warning identified as one the user cannot act on, as `warnings.filterwarnings` matches it."""

    category: type[Warning]
    message: str  # regular expression matched at the start of the message
    module: str  # the module that issues it, exactly
    source: str  # what triggers it, and why the user cannot act on it
    unless_set: frozenset[str] = frozenset()  # the user caused it by setting one of these: then it is shown

    def quieted_for(self, user_settings: frozenset[str]) -> bool:
        return not self.unless_set & user_settings


KNOWN_WARNINGS: tuple[KnownWarning, ...] = (
    KnownWarning(
        FutureWarning,
        r"`gradient_checkpointing` is deprecated",
        "transformers.training_args",
        "TRL's SFTConfig defaults `gradient_checkpointing` to True, a field transformers 5.20+ renamed "
        "`activation_checkpointing`: every config built warns (both `trl sft` processes, the model card). Shown when "
        "the recipe or the command line sets `gradient_checkpointing`: then renaming the key removes it.",
        frozenset({"gradient_checkpointing"}),
    ),
    KnownWarning(
        FutureWarning,
        r"`(is_gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable)` is deprecated",
        "transformers.modeling_utils",
        "PEFT (`get_peft_model`) and TRL (`unwrap_model_for_generation`, used for samples) call the model methods "
        "transformers renamed; nothing in a recipe calls them.",
    ),
    KnownWarning(
        UserWarning,
        r"'pin_memory' argument is set as true but no accelerator is found",
        "torch.utils.data.dataloader",
        "transformers' default `dataloader_pin_memory=True` on a machine without an accelerator: memory is simply not "
        "pinned, and training is the same. Shown when the recipe sets `dataloader_pin_memory`.",
        frozenset({"dataloader_pin_memory"}),
    ),
)


@dataclass(frozen=True)
class KnownLogRecord:
    """A log record of another library identified as one the user cannot act on, printed at import time (outside any
    block of the run), so quieted for the whole process by [`quiet_known_log_records`]."""

    logger: str  # the logger that emits it, exactly
    message: str  # regular expression matched at the start of the formatted message
    source: str  # what triggers it, and why the user cannot act on it


KNOWN_LOG_RECORDS: tuple[KnownLogRecord, ...] = (
    KnownLogRecord(
        "bitsandbytes.backends.cpu.ops",
        r"Failed to load CPU gemm_4bit_forward from kernels-community",
        "bitsandbytes (imported with PEFT by TRL, in both `trl sft` processes and every `trl-smol` command) asks the "
        "`kernels` package at import, on a CPU with AVX512-BF16, for a 4-bit kernel from the Hub, which `kernels` "
        "refuses to load from an organisation it does not trust (or cannot fetch offline); bitsandbytes then uses "
        "its own kernel. No recipe setting changes it, and the plugin loads no Hub kernel (memory/kernels.py).",
    ),
    KnownLogRecord(
        "kernels._internals.hf_hub",
        r"Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",
        "The same import of bitsandbytes under HF_HUB_OFFLINE: `kernels` says it cannot check the publisher of that "
        "kernel offline, before failing to find it in the cache; the record above is the same event.",
    ),
)


class _DropKnownRecord(logging.Filter):
    def __init__(self, known: KnownLogRecord):
        super().__init__()
        self.known = known
        self.pattern = re.compile(known.message)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.pattern.match(record.getMessage())
        except Exception:  # noqa: BLE001 - a record whose arguments do not format: logging reports it itself
            return True


def quiet_known_log_records() -> None:
    """In a process of `trl sft` or a `trl-smol` command: drop the records of [`KNOWN_LOG_RECORDS`], and only them,
    with a filter on the one logger that emits each (created before the library is imported, which then uses it).
    Every other record of those loggers is kept. Called once per process; calling it again adds nothing."""
    for known in KNOWN_LOG_RECORDS:
        if not any(
            isinstance(f, _DropKnownRecord) and f.known == known for f in logging.getLogger(known.logger).filters
        ):
            logging.getLogger(known.logger).addFilter(_DropKnownRecord(known))


def setting_names(argv: Iterable[str], recipe: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The settings a `trl sft` command line names: its `--key value` / `--key=value` flags and the keys of the recipe
    (`recipe`, as the caller read it, or else the file given as `--config`; a recipe that cannot be read names none
    here: TRL reports it when it reads it)."""
    argv = list(argv)
    names = {arg[2:].split("=", 1)[0].replace("-", "_") for arg in argv if arg.startswith("--") and len(arg) > 2}
    if recipe is not None:
        names |= set(recipe)
    elif "--config" in argv and argv.index("--config") + 1 < len(argv):
        import yaml

        try:
            with open(argv[argv.index("--config") + 1], encoding="utf-8") as recipe:
                values = yaml.safe_load(recipe)
        except (OSError, ValueError, yaml.YAMLError):
            values = None
        names |= set(values) if isinstance(values, dict) else set()
    return frozenset(names)


@contextlib.contextmanager
def quiet_known_warnings(user_settings: Iterable[str] = ()) -> Iterator[None]:
    """Within the block: the warnings of [`KNOWN_WARNINGS`] are not shown, except one the user's own settings caused;
    every other warning and transformers' log records are printed above the progress bar, not onto it.

    `-W` or `PYTHONWARNINGS` take precedence: with either, no warning is quieted. Everything is restored on exit.
    """
    settings = frozenset(user_settings)
    with warnings.catch_warnings():
        if not sys.warnoptions:
            for known in KNOWN_WARNINGS:
                if known.quieted_for(settings):
                    warnings.filterwarnings(
                        "ignore",
                        message=known.message,
                        category=known.category,
                        module=re.escape(known.module) + r"\Z",
                    )
        if _stdlib_displays_warnings():  # not when a test or `logging.captureWarnings` collects them
            warnings.showwarning = _show_warning_above_progress
        with _transformers_logging_above_progress():
            yield


def _stdlib_displays_warnings() -> bool:
    implementation = getattr(warnings, "_showwarnmsg_impl", None)
    return (
        warnings.showwarning is getattr(warnings, "_showwarning_orig", None)
        and getattr(implementation, "__module__", None) == "warnings"
    )


def _show_warning_above_progress(message, category, filename, lineno, file=None, line=None) -> None:
    text = warnings.formatwarning(message, category, filename, lineno, line)
    write_text(text, file=file or sys.stderr)


@contextlib.contextmanager
def _transformers_logging_above_progress() -> Iterator[None]:
    """transformers' console handler (if any) writes above the progress bar; its level, format and filters kept."""
    logger = logging.getLogger("transformers")
    logger.handlers = [_AboveProgressHandler(h) if _writes_to_console(h) else h for h in logger.handlers]
    try:
        yield
    finally:  # handlers added or removed meanwhile stay so
        logger.handlers = [h.original if isinstance(h, _AboveProgressHandler) else h for h in logger.handlers]


def _writes_to_console(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr)


class _AboveProgressHandler(logging.Handler):
    def __init__(self, original: logging.StreamHandler):
        super().__init__(original.level)
        self.original = original
        self.setFormatter(original.formatter)
        self.filters = list(original.filters)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_text(self.format(record) + self.original.terminator, file=self.original.stream)
        except Exception:  # noqa: BLE001 - as logging.StreamHandler does
            self.handleError(record)


class RunConsole:
    """The console of one trainer: quieted warnings and step lines where the plugin is active, else TRL's console.

    ```python
    console = RunConsole(active=True, user_settings=plan.explicit)
    console.step("Loading the model x (lora)")  # prints nothing when not active
    with console.quiet():  # quiet_known_warnings(plan.explicit) when active, else nothing
        ...
    ```
    """

    def __init__(self, active: bool, user_settings: Iterable[str] = ()):
        self.active = active
        self.user_settings = frozenset(user_settings)

    def quiet(self) -> contextlib.AbstractContextManager:
        return quiet_known_warnings(self.user_settings) if self.active else contextlib.nullcontext()

    def step(self, message: str) -> None:
        if self.active:
            step(message)


# --- printing ------------------------------------------------------------------------------------------------------
def is_main_process() -> bool:
    """Rank 0, or a process that no launcher numbered (one process)."""
    return os.environ.get("RANK", "0") == "0"


@functools.lru_cache(maxsize=1)
def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)  # writes to whatever sys.stdout is when it prints


def write(renderable: Any, *, console: Any = None) -> None:
    """Print a rich renderable (a `Text`, a `Table`, a string without markup) on lines of its own, above any tqdm
    progress bar, which is drawn again below it. `console` is a rich `Console` (default: one on stdout)."""
    from rich.text import Text
    from tqdm import tqdm

    console = console or _stdout_console()
    if isinstance(renderable, str):
        renderable = Text(renderable)
    with tqdm.external_write_mode(file=console.file):
        console.print(renderable, soft_wrap=isinstance(renderable, Text))


def write_text(text: str, *, file: Any = None) -> None:
    """Write plain text (ending with a newline) above any tqdm progress bar."""
    from tqdm import tqdm

    file = file or sys.stdout
    with tqdm.external_write_mode(file=file):
        file.write(text)
        file.flush()


SAME_OUTPUT_ENV = "TRL_SMOL_SAME_OUTPUT"  # set by `trl sft`: the place its stdout and stderr both reach


def ordered_output(role: str, environ: dict[str, str] | None = None) -> None:
    """Output of `trl sft` that stays in order in a terminal, a log file (`> log 2>&1`) and a pipe.

    accelerate 1.16's launcher relays a training process's stderr through a pipe (it keeps the tail for its error),
    while stdout goes straight to the destination. The progress bar is drawn on stderr and the lines printed above it
    (the plugin's, TRL's loss lines) on stdout, so a line could overtake the bar's clearing and land glued to the bar.

    - In the `trl sft` process (`role="cli"`): when its stdout and stderr reach the same file, pipe or terminal,
      records which one for the training processes ([`SAME_OUTPUT_ENV`]).
    - In a training process (`"script"`) whose stdout goes straight to that place: stdout then goes through stderr's
      channel (the relay, which ends there too), so that both arrive in the order they were written. Anywhere else
      (stdout and stderr split by the user, a launcher that redirects each rank to files) each keeps its own. Either
      way stdout is written line by line (transformers prints the loss lines with `tqdm.write`, which does not flush).
    """
    environ = os.environ if environ is None else environ
    if role == "cli":
        try:
            out, err = os.fstat(1), os.fstat(2)
            same = os.path.samestat(out, err)
        except OSError:
            same = False
        if same:
            environ[SAME_OUTPUT_ENV] = f"{out.st_dev}:{out.st_ino}"
        else:
            environ.pop(SAME_OUTPUT_ENV, None)
        return
    with contextlib.suppress(Exception):  # a stream that is not a file descriptor (an embedding host): left alone
        out = os.fstat(1)
        if environ.get(SAME_OUTPUT_ENV) == f"{out.st_dev}:{out.st_ino}" and not os.path.samestat(out, os.fstat(2)):
            sys.stdout.flush()
            os.dup2(2, 1)
    with contextlib.suppress(Exception):
        if isinstance(sys.stdout, io.TextIOWrapper) and not sys.stdout.line_buffering:
            sys.stdout.reconfigure(line_buffering=True)


def step(message: str) -> None:
    """One line before a step that takes more than a moment, on the main process: `⏳ Loading the model x…`."""
    if not is_main_process():
        return
    from rich.text import Text

    write(Text(f"{LINE_PREFIX}{message}…"))
