"""`SmolTrlParser`: TRL's `TrlParser`, reading `SmolSFTConfig` and rejecting recipe keys nobody knows.

Stock `trl sft` hands every YAML key its parser does not know to `accelerate launch` as `--key value`, where a typo
such as `lerning_rate: 1e-4` fails late, with accelerate's usage text, or (`python sft.py`) is silently ignored. This
parser raises [`UnknownRecipeKeyError`] instead, before any model is loaded, naming the file, the key and the closest
valid key. Keys that `accelerate launch` understands (`num_processes`, `mixed_precision`, ...) stay allowed: they are
how a recipe chooses its launcher settings.

```python
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments
from trl_smol import SmolSFTConfig
from trl_smol.parser import SmolTrlParser

parser = SmolTrlParser((ScriptArguments, SmolSFTConfig, ModelConfig, DatasetMixtureConfig))
script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(["--config", "recipe.yaml"])
```
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Iterable

from trl.scripts.utils import DatasetMixtureConfig, TrlParser
from trl.trainer.sft_config import SFTConfig

from .config import SmolSFTConfig
from .console import quiet_known_warnings, setting_names, step
from .data.mixtures import SmolDatasetMixtureConfig
from .data.smoltalk2 import after_parse
from .features import FEATURES
from .features.values import check_recipe_values, text_not_accepted
from .launch import (
    accelerate_launch_arguments,
    current_role,
    engine_for_cpu,
    given_options,
    mark_default_cpu_threads,
    use_cpu_for_cpu_world,
)
from .settings import UserSettings

# Top-level YAML keys consumed outside the dataclasses: `env` by TrlParser, `accelerate_config` by the trl CLI (it
# becomes `accelerate launch --config_file`, accepting a path or a config name shipped with TRL).
_PARSER_KEYS = {"env", "accelerate_config"}


# argparse's words for a value it could not convert: "argument --max_length: invalid int value: 'often'", and
# transformers' `string_to_bool` for a bool field.
_NOT_CONVERTED = tuple(
    re.compile(r"argument --(?P<key>\w+)(?:/--[\w-]+)*: " + words)
    for words in (
        r"invalid (?P<kind>int|float) value: '(?P<text>.*)'$",
        r"Truthy value expected: got (?P<text>.*) but expected one of .*$",  # (?P<kind>) absent: a bool
        r"invalid choice: '(?P<text>.*)' \(choose from (?P<choices>.*)\)$",
    )
)


class UnknownRecipeKeyError(ValueError):
    """A recipe (YAML config) key that neither TRL, trl-smol nor `accelerate launch` knows."""


@functools.lru_cache(maxsize=1)
def accelerate_launch_keys() -> frozenset[str]:
    """Destinations of `accelerate launch` options; a recipe may set them as top-level keys."""
    from accelerate.commands.launch import launch_command_parser

    parser = launch_command_parser()
    keys = {action.dest for action in parser._actions}
    keys |= {opt.lstrip("-").replace("-", "_") for action in parser._actions for opt in action.option_strings}
    return frozenset(keys - {"help", "h", "training_script", "training_script_args"})


class SmolTrlParser(TrlParser):
    """[`trl.TrlParser`] that reads [`SmolSFTConfig`] where a script asked for `SFTConfig`, and checks recipe keys."""

    def __init__(self, dataclass_types=None, **kwargs):
        if dataclass_types is not None and not isinstance(dataclass_types, Iterable):
            dataclass_types = [dataclass_types]
        if dataclass_types is not None:
            # A script may hold TRL's own SFTConfig (imported before the plugin was active): read ours instead.
            # The mixture config gains `think_share` (trl_smol.data.mixtures), the share of reasoning data in a recipe.
            ours = {SFTConfig: SmolSFTConfig, DatasetMixtureConfig: SmolDatasetMixtureConfig}
            dataclass_types = [ours.get(t, t) for t in dataclass_types]
        self._config_path: str | None = None
        self._recipe: dict = {}
        super().__init__(dataclass_types, **kwargs)

    def parse_args_and_config(self, args=None, *positional, **kwargs):
        import sys

        argv = list(args) if args is not None else sys.argv[1:]
        self._recipe = {}
        if "--config" in argv and argv.index("--config") + 1 < len(argv):
            self._config_path = argv[argv.index("--config") + 1]
        role = current_role()
        recipe = (
            self._peek_recipe()
        )  # read once here; TRL reads it again itself, and set_defaults_with_config keeps it
        if role != "cli":
            argv = use_cpu_for_cpu_world(argv, lambda: recipe)
        # TRL's defaults meet transformers' renames (console.py): quiet where the user did not set them
        with quiet_known_warnings(setting_names(argv, recipe)):
            outputs = super().parse_args_and_config(argv, *positional, **kwargs)  # calls set_defaults_with_config
        if role == "cli" and kwargs.get("return_remaining_strings"):
            parts = [outputs[-2], outputs[-1]] if kwargs.get("separate_remaining_strings") else [outputs[-1]]
            for argument, copy in engine_for_cpu([arg for part in parts for arg in part]).items():
                # Later than the config TRL resolves from `--accelerate_config`, so accelerate's parser takes it; the
                # command line's own arguments stay as typed (TRL subtracts them from the training script's).
                parts[0].extend(["--config_file", copy])
                step(f"No accelerator here: DeepSpeed from {argument or 'the accelerate config'} runs on the CPU "
                     f"(gloo), without mixed precision ({copy})")  # fmt: skip
            launch_args = [arg for part in parts for arg in part]
            parts[0].extend(accelerate_launch_arguments(launch_args))
            mark_default_cpu_threads(launch_args)  # a memory preset may raise them
        # Record what the recipe and the command line set, so that presets leave those settings alone.
        cli_keys = given_options(argv)
        # Every dataclass's keys, not only the training arguments': a ModelConfig key such as `dtype` reaches the
        # trainer inside `model_init_kwargs`, which TRL's script fills with its defaults too.
        explicit = frozenset(set(self._recipe) | cli_keys)
        for output in outputs:
            if isinstance(output, SmolSFTConfig):
                output.user_settings = UserSettings(explicit, self._config_path, dict(self._recipe))
        if role != "cli":  # the launcher process only forwards the arguments
            after_parse(outputs)  # SmolTalk2 without a `train` split, missing splits
        return outputs

    def parse_known_args(self, args=None, namespace=None):
        """argparse's parse, then the checks of the recipe's and the command line's values (features/values.py) and,
        in a `trl sft` process, of the hardware the recipe needs: before any dataclass is built, so before TRL's and
        transformers' own checks, whose messages name neither the recipe nor what to do."""
        namespace, remaining = super().parse_known_args(args, namespace)
        if SmolSFTConfig in self.dataclass_types:
            check_recipe_values(namespace, FEATURES)
            self._check_choices(namespace)
            if current_role() in ("cli", "script"):
                check_hardware(namespace, self._config_path)
        return namespace, remaining

    def _check_choices(self, namespace) -> None:
        """A recipe value of a setting with choices (argparse checks only the command line's against them)."""
        for action in self._actions:
            value = getattr(namespace, action.dest, None)
            if action.choices is None or value is None or isinstance(value, (list, dict)):
                continue
            choices = [str(getattr(choice, "value", choice)) for choice in action.choices]
            if str(getattr(value, "value", value)) not in choices:
                raise text_not_accepted(action.dest, value, "one of " + ", ".join(choices), FEATURES)

    def error(self, message):
        """A value argparse could not convert (`sample_every_n_steps: often`) is one line naming the key, as every
        entry point says it; other argparse errors stay argparse's."""
        for pattern in _NOT_CONVERTED:
            match = pattern.match(message)
            if match:
                found = match.groupdict()
                kind = found.get("kind") or (
                    "one of " + found["choices"].replace("'", "") if found.get("choices") else "bool"
                )
                raise text_not_accepted(match["key"], match["text"], kind, FEATURES)
        super().error(message)

    def _peek_recipe(self) -> dict:
        """The recipe's values before TRL reads it (its keys, whether it sets `use_cpu`); a recipe that cannot be read
        is left to TRL, which reports it."""
        if not self._config_path:
            return {}
        import yaml

        try:
            with open(self._config_path, encoding="utf-8") as recipe:
                values = yaml.safe_load(recipe)
        except (OSError, ValueError, yaml.YAMLError):
            return {}
        return values if isinstance(values, dict) else {}

    def recipe_values(self, recipe: dict, config_path: str | None = None):
        """The recipe's values as `trl sft` reads them, converted and checked (its keys and values), without building
        the training arguments: `trl-smol doctor` plans a GPU recipe on a laptop from them."""
        self._config_path = config_path
        self.set_defaults_with_config(**recipe)
        namespace, _ = self.parse_known_args([])
        return namespace

    def known_keys(self) -> set[str]:
        """Every key a recipe may use: dataclass fields, parser keys and `accelerate launch` options."""
        return {action.dest for action in self._actions} | _PARSER_KEYS | set(accelerate_launch_keys())

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        # A deep copy: the dataclasses convert some values in place (`datasets` entries become DatasetConfig objects).
        self._recipe = copy.deepcopy(kwargs)
        remaining = super().set_defaults_with_config(**kwargs)
        self.check_recipe_keys(kwargs, self._config_path)
        return remaining

    def check_recipe_keys(self, keys: Iterable[str], config_path: str | None = None) -> None:
        """Raise [`UnknownRecipeKeyError`] for the first key nobody knows (also used by `trl-smol doctor`)."""
        dataclass_keys = {action.dest for action in self._actions}
        launcher_keys = accelerate_launch_keys()
        for key in keys:
            if key in dataclass_keys or key in launcher_keys or key in _PARSER_KEYS:
                continue
            close = difflib.get_close_matches(key, sorted(self.known_keys()), n=1, cutoff=0.6)
            where = f"recipe {config_path}" if config_path else "the recipe"
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise UnknownRecipeKeyError(
                f"Unknown key `{key}` in {where}: neither TRL's SFT arguments, trl-smol nor `accelerate launch` "
                f"know it.{hint} Run `trl sft --help` for the valid keys, or remove it."
            )


def check_hardware(values, config_path: str | None = None) -> None:
    """Stop, in one line, when the recipe needs hardware this machine lacks (`trl_smol.memory.requirements`)."""
    from .memory.hardware import detect_hardware
    from .memory.requirements import RecipeNeedsHardwareError, hardware_problem

    problem = hardware_problem(values, detect_hardware(), recipe=config_path)
    if problem:
        raise RecipeNeedsHardwareError(problem)
