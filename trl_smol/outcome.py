"""How a `trl sft` run ends, in the words a user reads: a failure as one block with its cause last, and a finished
run's files with the Python that loads them.

```python
from trl_smol.outcome import cause_line, is_plugin_error, run_outputs

is_plugin_error(error, error.__traceback__)  # raised on purpose by the plugin, with a message saying what to do
cause_line(error)                            # "DataFileError: Data file x.jsonl, line 3 is not JSON ..."
print(run_outputs("smollm3-demo"))           # where the model, samples.jsonl and the card are, how to load them
```

Standard library only: [`trl_smol.hook`] uses it in the excepthooks of both `trl sft` processes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

# --- a failure: one block, the cause last --------------------------------------------------------------------------
TRACEBACK_ENV = "TRL_SMOL_TRACEBACK"  # "1": a plugin error is printed with its traceback, as Python prints any error


def traceback_requested() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_plugin_error(error: BaseException, traceback: Any) -> bool:
    """Whether `error` is one the plugin raised on purpose, with a message that says what to do: raised by a `raise`
    statement in the plugin's own code (a bug of the plugin, a library's error passing through it, Ctrl-C are not)."""
    import traceback as tracebacks

    if not isinstance(error, Exception):
        return False
    frames = tracebacks.extract_tb(traceback)
    if not frames:
        return False
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    last = frames[-1]
    return os.path.abspath(last.filename).startswith(package) and (last.line or "").lstrip().startswith("raise ")


def cause_line(error: BaseException) -> str:
    """The error as one line: `DataFileError: Data file x.jsonl, line 3 ...`."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def save_traceback(error: BaseException, traceback: Any, path: str | None = None) -> str | None:
    """Write the error's traceback to `path` (default: a new file in the temporary folder); returns the path, or None
    when it cannot be written."""
    import tempfile
    import traceback as tracebacks

    text = "".join(tracebacks.format_exception(type(error), error, traceback))
    try:
        if path is None:
            handle, path = tempfile.mkstemp(prefix="trl-smol-traceback-", suffix=".txt")
            os.close(handle)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError:
        return None
    return path


def traceback_note(path: str | None) -> str:
    if path is None:
        return f"set {TRACEBACK_ENV}=1 to see the traceback"
    return f"traceback in {path} ({TRACEBACK_ENV}=1 prints it)"


def print_failure(headline: str, cause: str, *, file: Any = None) -> None:
    """The block a failed `trl sft` ends with: a headline, then the cause as the last line."""
    file = file or sys.stderr
    with contextlib.suppress(Exception):  # a closed stream: nothing left to tell
        file.write(f"{headline}\n{cause}\n")
        file.flush()


def handle_plugin_error(error: BaseException, traceback: Any, headline: str | None, path: str | None = None) -> bool:
    """What both processes of `trl sft` do with an uncaught error: a plugin error (see [`is_plugin_error`]) gets its
    traceback saved (to `path`, or a new file) and, with a `headline` (`{note}` names the file), one block with the
    cause last; `False` for any other error, or when `TRL_SMOL_TRACEBACK` is set, for Python to print as usual."""
    if not is_plugin_error(error, traceback) or traceback_requested():
        return False
    note = traceback_note(save_traceback(error, traceback, path))
    if headline is not None:
        print_failure(headline.format(note=note), cause_line(error))
    return True


# --- the end of a run ----------------------------------------------------------------------------------------------
def run_outputs(output_dir: str) -> str | None:
    """What a finished run left in `output_dir` and the Python that loads it, for the last lines of the run; None
    when no model was saved there."""
    folder = os.path.abspath(output_dir)
    adapter = os.path.isfile(os.path.join(folder, "adapter_config.json"))
    if not adapter and not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    shown = output_dir if os.path.abspath(output_dir) == output_dir else f"{output_dir} ({folder})"
    lines = [f"The run's files are in {shown}:"]
    if adapter:
        lines.append("  adapter_model.safetensors, adapter_config.json: the LoRA adapter, with the tokenizer's files")
    else:
        lines.append("  model.safetensors, config.json: the model, with the tokenizer's files")
    if os.path.isfile(os.path.join(folder, "samples.jsonl")):
        lines.append("  samples.jsonl: the sample answers generated during training, one JSON object per line")
    if os.path.isfile(os.path.join(folder, "README.md")):
        lines.append("  README.md: the model card (base model, recipe, data, results, last samples, how to use it)")
    module, auto = ("peft", "AutoPeftModelForCausalLM") if adapter else ("transformers", "AutoModelForCausalLM")
    load = f"from {module} import {auto}; model = {auto}.from_pretrained({folder!r})"
    lines += ["Load it in Python (and its tokenizer with AutoTokenizer.from_pretrained, same folder):", f"  {load}"]
    return "\n".join(lines)
