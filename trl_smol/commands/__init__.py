"""The `trl-smol` console script: tools around training (training itself is the stock `trl sft`).

```bash
trl-smol callbacks                          # callbacks that recipes can name
trl-smol render --config recipe.yaml -n 3   # examples as the trainer sees them
trl-smol doctor --config recipe.yaml        # hardware, preset, memory estimate, verdict
trl-smol estimate --model HuggingFaceTB/SmolLM3-3B-Base --method qlora --max-length 4096
trl-smol samples smollm3-demo               # pass rates per sample pass (two output dirs: side by side)
```

Each subcommand lives in its own module, which provides `configure_parser(parser)` and `run(args) -> int`; the
table below is the only place that lists them, so `trl-smol --help` shows exactly what exists. Only the module of the
subcommand that runs is imported: `trl-smol --version` and `trl-smol --help` load neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from .. import __version__

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "callbacks": ("trl_smol.commands.callbacks", "List the callbacks registered under `trl_smol.callbacks`."),
    "render": (
        "trl_smol.commands.render",
        "Show examples of a recipe as the trainer will see them, trained tokens highlighted.",
    ),
    "doctor": (
        "trl_smol.commands.doctor",
        "Detect the hardware, pick a memory preset and check that the recipe fits.",
    ),
    "estimate": ("trl_smol.commands.estimate", "Estimate the memory of a hypothetical run, with a breakdown."),
    "samples": (
        "trl_smol.commands.samples",
        "Pass rates per step from a run's samples.jsonl, or two runs side by side.",
    ),
}


def available_subcommands() -> dict[str, tuple[str, str]]:
    """Subcommands whose module is present in this installation."""
    return {name: entry for name, entry in SUBCOMMANDS.items() if importlib.util.find_spec(entry[0]) is not None}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `trl-smol` parser. Every subcommand is listed with its help line; only `command`'s module is imported and
    given its options (it imports torch and transformers: seconds)."""
    parser = argparse.ArgumentParser(
        prog="trl-smol",
        description="Tools for fine-tuning SmolLM3 with TRL. "
        "Train with the stock command: trl sft --config recipe.yaml",
    )
    parser.add_argument("--version", action="version", version=f"trl-smol {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in available_subcommands().items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.configure_parser(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..console import quiet_known_log_records

    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_known_log_records()  # before a subcommand imports the libraries that log them
    command = next((arg for arg in argv if not arg.startswith("-")), None)  # the top level has options only
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
