"""How the plugin enters the stock `trl sft` flow. All of the integration lives in this file.

`trl sft --config recipe.yaml` runs in two processes (trl 1.16):

1. the **CLI process** (`.../bin/trl sft ...`) builds `trl/scripts/sft.py`'s parser to read the YAML and the command
   line, then starts the training script through `accelerate launch`;
2. the **script process(es)** (`.../trl/scripts/sft.py ...`, one per rank) parse the same arguments again and call
   `from trl import SFTConfig, SFTTrainer, TrlParser` inside functions, at call time.

TRL reads no plugin entry point, so the package installs `trl_smol.pth` into site-packages. Python executes it at
start-up of every interpreter; it calls [`install`], which looks at `sys.argv` and, only in those two kinds of
process, registers a post-import hook (wrapt) on `trl`. When `trl` is imported, the hook replaces these names on the
`trl` module of that process:

- `trl.SFTConfig` -> [`SmolSFTConfig`]: `trl sft --help` lists the plugin options and recipes may use its keys;
- `trl.TrlParser` -> [`SmolTrlParser`]: a recipe key that neither TRL, the plugin nor `accelerate launch` knows
  fails at once, naming the key and the closest valid one (stock TRL would pass it to `accelerate launch`);
- `trl.SFTTrainer` -> [`SmolSFTTrainer`] (script process only): the trainer that trains is the plugin's;
- `trl.get_dataset` -> [`trl_smol.mixtures.get_dataset`] (script process only): a `datasets:` mixture whose entries
  have different columns fails naming both, where TRL would fill the gaps with nulls.

Every other process, including a user's own program that imports trl, is left alone: `from trl import SFTTrainer`
returns TRL's class there. `TRL_SMOL_DISABLE=1` switches everything off.

One more hook serves programs that import the plugin themselves (the course's Python example, see `trl_smol.course`):
importing `trl_smol.trainer` calls [`patch_datasets`], after which `load_dataset("HuggingFaceTB/smoltalk2", "SFT")`
returns a `DatasetDict` whose missing `train` split is SmolLM3's SFT mixture. Nothing else `datasets` returns changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

DISABLE_ENV = "TRL_SMOL_DISABLE"
ACTIVE_ENV = "TRL_SMOL_ACTIVE"  # set in the script process, so the trainer knows it was entered through `trl sft`

_SCRIPT_SUFFIX = os.path.join("trl", "scripts", "sft.py")


def is_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def detect_role(argv: Sequence[str], orig_argv: Sequence[str] = ()) -> str | None:
    """Which process of the `trl sft` flow this is: `"cli"`, `"script"`, or `None` for any other process.

    ```python
    >>> detect_role(["/venv/bin/trl", "sft", "--config", "r.yaml"])
    'cli'
    >>> detect_role(["/venv/lib/python3.11/site-packages/trl/scripts/sft.py", "--config", "r.yaml"])
    'script'
    >>> detect_role(["/venv/bin/trl", "dpo"]) is None
    True
    ```
    """
    if not argv:
        return None
    program = os.path.normpath(argv[0])
    if os.path.basename(program) in ("trl", "trl.exe") or program.endswith(os.path.join("trl", "cli", "main.py")):
        command = next((arg for arg in argv[1:] if not arg.startswith("-")), None)
        return "cli" if command == "sft" else None
    if program.endswith(_SCRIPT_SUFFIX):
        return "script"
    # `python -m trl.scripts.sft ...`: sys.argv[0] is still "-m" while .pth files run
    orig = list(orig_argv)
    if "-m" in orig and orig.index("-m") + 1 < len(orig) and orig[orig.index("-m") + 1] == "trl.scripts.sft":
        return "script"
    return None


def install() -> str | None:
    """Register the post-import hook when this process belongs to `trl sft`. Returns the detected role."""
    if is_disabled():
        return None
    role = detect_role(sys.argv, getattr(sys, "orig_argv", ()))
    if role is None:
        return None
    import wrapt

    # trl/__init__.py replaces itself in sys.modules by a lazy module: patch that one, not the module the hook gets.
    wrapt.register_post_import_hook(lambda _module: patch_trl(sys.modules["trl"], role), "trl")
    return role


def patch_trl(trl_module, role: str) -> None:
    """Swap the plugin's classes into `trl` for this process (see the module docstring)."""
    from .config import SmolSFTConfig
    from .parser import SmolTrlParser

    trl_module.SFTConfig = SmolSFTConfig
    trl_module.TrlParser = SmolTrlParser
    if role == "script":
        from .mixtures import get_dataset
        from .trainer import SmolSFTTrainer

        trl_module.SFTTrainer = SmolSFTTrainer
        trl_module.get_dataset = get_dataset
        os.environ[ACTIVE_ENV] = "1"


def patch_datasets() -> None:
    """Make `load_dataset("HuggingFaceTB/smoltalk2", "SFT")["train"]` the SmolLM3 mixture in this process.

    Wraps `datasets.builder.DatasetBuilder.as_dataset`, which every non-streaming `load_dataset` call ends in, so that
    it works whatever the order of the user's imports (`from datasets import load_dataset` may come first). Results
    other than SmolTalk2's `SFT` config loaded without `split=` pass through untouched
    ([`trl_smol.course.wrap_smoltalk2_splits`]). Idempotent; a no-op under `TRL_SMOL_DISABLE=1`.
    """
    global _datasets_patched
    if _datasets_patched or is_disabled():
        return
    import wrapt

    def as_dataset(wrapped, builder, args, kwargs):
        from .course import wrap_smoltalk2_splits

        split = kwargs.get("split", args[0] if args else None)
        return wrap_smoltalk2_splits(builder, split, wrapped(*args, **kwargs))

    wrapt.wrap_function_wrapper("datasets.builder", "DatasetBuilder.as_dataset", as_dataset)
    _datasets_patched = True


_datasets_patched = False
