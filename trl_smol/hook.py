"""The one piece of magic: how the plugin enters the stock `trl sft` flow. Nothing else touches another library.

TRL reads no plugin entry point, so the package installs `trl_smol.pth` into site-packages. Python executes it at
start-up of every interpreter; it calls [`bootstrap`], which looks at `sys.argv` and, only in the two kinds of process
of `trl sft` (see [`trl_smol.launch`]), registers a post-import hook (wrapt) on `trl`. When `trl` is imported there,
the hook replaces these names on the `trl` module of that process:

- `trl.SFTConfig` -> [`SmolSFTConfig`]: `trl sft --help` lists the plugin options and recipes may use its keys;
- `trl.TrlParser` -> [`SmolTrlParser`]: a recipe key that neither TRL, the plugin nor `accelerate launch` knows
  fails at once, naming the key and the closest valid one (stock TRL would pass it to `accelerate launch`);
- `trl.SFTTrainer` -> [`SmolSFTTrainer`] (script process only): the trainer that trains is the plugin's;
- `trl.get_dataset` -> [`trl_smol.data.mixtures.get_dataset`] (script process only): a `datasets:` mixture whose
  entries have different columns fails naming both, where TRL would fill the gaps with nulls.

In both processes it also prints one line as the process starts, before torch and transformers load (seconds); see
[`trl_smol.console`]. Every other process, including a user's own program that imports trl, is left alone:
`from trl import SFTTrainer` returns TRL's class there. `TRL_SMOL_DISABLE=1` switches everything off.

Keep the import of this module free of anything but the standard library: it runs at every interpreter start-up.
"""

from __future__ import annotations

import os
import sys

from .launch import ACTIVE_ENV, FAILURE_FILE_ENV, current_role, is_disabled, report_failure, training_exit_status
from .preemption import STOP_SIGNALS, STOPPED_PREFIX, exit_status, hold_for_training_processes, release_held_signals


def bootstrap() -> None:
    """Entry point of `trl_smol.pth`. Never breaks an unrelated interpreter: a failure is one line on stderr."""
    try:
        install()
    except Exception as error:
        print(
            f"trl-smol: plugin not activated ({type(error).__name__}: {error}). Install trl-smol and its dependencies "
            "(`pip install trl-smol`) in this environment, or set TRL_SMOL_DISABLE=1 to silence this.",
            file=sys.stderr,
        )


def install() -> str | None:
    """Register the post-import hook when this process belongs to `trl sft`. Returns the detected role."""
    if is_disabled():
        return None
    role = current_role()
    if role is None:
        return None
    if role == "script":
        release_held_signals()  # inherited blocked from a `trl sft` process that holds them (trl_smol.preemption)
    else:  # now, before any library starts a thread that would take a stop signal to accelerate's handler
        hold_for_training_processes()
    import wrapt

    # trl/__init__.py replaces itself in sys.modules by a lazy module: patch that one, not the module the hook gets.
    wrapt.register_post_import_hook(lambda _module: patch_trl(sys.modules["trl"], role), "trl")
    return role


def patch_trl(trl_module, role: str) -> None:
    """Swap the plugin's classes into `trl` for this process (see the module docstring)."""
    announce_start(role)  # before the imports below, which load torch and transformers (seconds)
    from .config import SmolSFTConfig
    from .parser import SmolTrlParser

    trl_module.SFTConfig = SmolSFTConfig
    trl_module.TrlParser = SmolTrlParser
    if role == "script":
        from .data.mixtures import get_dataset
        from .trainer import SmolSFTTrainer

        trl_module.SFTTrainer = SmolSFTTrainer
        trl_module.get_dataset = get_dataset
        os.environ[ACTIVE_ENV] = "1"
        sys.excepthook = _recording_excepthook(sys.excepthook)
    elif role == "cli":
        _prepare_cli_process()


_ANNOUNCED: set[str] = set()


def announce_start(role: str) -> None:
    """One line as each process of `trl sft` starts, so that loading torch and transformers is not a silent wait
    (once per process); the third-party log records no user can act on quieted for the process, and the output kept
    in order in a file or a pipe ([`trl_smol.console.ordered_output`])."""
    from .console import ordered_output, quiet_known_log_records, step

    if role in _ANNOUNCED:
        return
    _ANNOUNCED.add(role)
    try:
        quiet_known_log_records()
        ordered_output(role)
        if role == "cli" and not {"-h", "--help"} & set(sys.argv):
            step("Starting trl sft with trl-smol: loading torch and transformers, reading the recipe")
        elif role == "script":
            step("Training process started: loading torch, transformers and the data")
    except Exception:  # noqa: BLE001 - a line that cannot be printed (a closed pipe) must not stop `trl sft`
        pass


# --- the two processes of `trl sft`: signals reach training, and the last line printed is the cause -----------------
def _recording_excepthook(original):
    """In a training process: record the error's one line for the CLI process, which prints it last. An error the
    plugin raised on purpose (its message says what to do) is not printed here: its traceback goes to a file that the
    CLI process names (`TRL_SMOL_TRACEBACK=1` prints it); without a CLI process (`python trl/scripts/sft.py`) this
    process prints the block. Any other error is printed as Python does."""

    def excepthook(kind, error, traceback):
        from .outcome import cause_line, handle_plugin_error

        report_failure(cause_line(error))
        failure_file = os.environ.get(FAILURE_FILE_ENV)
        headline = None if failure_file else "trl sft: the run stopped; {note}. The cause:"  # else the CLI prints it
        path = _traceback_path(failure_file) if failure_file else None
        if not handle_plugin_error(error, traceback, headline, path):
            original(kind, error, traceback)

    return excepthook


def _traceback_path(failure_file: str) -> str:
    """Where a training process writes a plugin error's traceback, for the CLI process to name."""
    return os.path.splitext(failure_file)[0] + "-traceback.txt"


def _prepare_cli_process() -> None:
    """In the CLI process: a file for the training process's failure line, the stop signals (SIGTERM, SIGINT,
    SIGUSR1) held and forwarded to the training processes, whatever accelerate's launcher would do with them
    ([`trl_smol.preemption`]), and, when training failed, that line printed last instead of accelerate's bare
    `CalledProcessError`."""
    import signal
    import tempfile

    handle, path = tempfile.mkstemp(prefix="trl-smol-failure-", suffix=".txt")
    os.close(handle)
    os.environ[FAILURE_FILE_ENV] = path
    import atexit

    atexit.register(lambda: os.path.exists(path) and os.remove(path))
    for number in STOP_SIGNALS:
        signal.signal(number, _stop_cli_process)
    sys.excepthook = _cause_last_excepthook(sys.excepthook, path)


def _stop_cli_process(number, frame) -> None:
    """What a held stop signal does to the CLI process itself when there is no training process to forward it to:
    stop as Python would (accelerate replaces the SIGTERM one while it launches)."""
    import signal

    if number == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(exit_status(number))


def _cause_last_excepthook(original, path: str):
    """In the CLI process: a failed training process ends with one block, its cause last (printed once: the
    training process printed no traceback for a plugin error); a plugin error of this process likewise."""

    def excepthook(kind, error, traceback):
        from .outcome import handle_plugin_error, print_failure, traceback_note

        try:
            with open(path, encoding="utf-8") as file:
                cause = file.read().strip()
        except OSError:
            cause = ""
        if kind.__name__ not in ("CalledProcessError", "ChildFailedError"):  # before launching: a recipe error
            if not handle_plugin_error(error, traceback, "trl sft: stopped before training; {note}. The cause:"):
                original(kind, error, traceback)
            return  # the interpreter exits with status 1, as after any uncaught error
        if not cause:
            original(kind, error, traceback)
            return
        code = training_exit_status(error)
        if cause.startswith(STOPPED_PREFIX):  # a run stopped by a signal did not fail: its line says so
            print(cause, file=sys.stderr, flush=True)
        else:
            saved = _traceback_path(path)
            note = f"; {traceback_note(saved)}" if os.path.exists(saved) else ""
            print_failure(f"trl sft: the training process failed (exit status {code}){note}. Its error:", cause)
        os.remove(path)
        os._exit(code if isinstance(code, int) and 0 < code < 256 else 1)  # nothing else may print after the cause

    return excepthook
