"""SmolTalk2's `SFT` config, which has no `train` split, trained as SmolLM3 was: its published SFT mixture.

SmolTalk2 (`HuggingFaceTB/smoltalk2`, config `SFT`) has 25 named splits and no `train` split, so the course's command
(`trl sft ... --dataset_name HuggingFaceTB/smoltalk2 --dataset_config SFT`) stops in stock TRL with `KeyError:
'train'`. With the plugin, [`resolve_dataset_splits`] checks the requested train split once the recipe is parsed:

- SmolTalk2 `SFT` asked for `train`: the run trains on SmolLM3's published SFT mixture
  ([`trl_smol.data.mixtures.smoltalk2_mixture`], through TRL's own `datasets:` mixture path) and prints one line
  saying which splits and weights, how to choose others, and that `recipes/smollm3_course.yaml` holds the course's
  settings. No hyperparameter changes: the run keeps TRL's defaults for everything the user left unset.
- any other dataset with a missing split: [`MissingSplitError`] listing the splits that exist.

In Python, [`smoltalk2_train`] builds the same mixture from the `DatasetDict` that `load_dataset` returns; it works
with stock `trl.SFTTrainer` too:

```python
from datasets import load_dataset
from trl_smol import smoltalk2_train

dataset = load_dataset("HuggingFaceTB/smoltalk2", "SFT")
train_dataset = smoltalk2_train(dataset)                  # the rows `trl sft` trains on with the same settings
train_dataset = smoltalk2_train(dataset, think_share=0.3, seed=42)
```
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .input_files import check_local_data_files
from .mixtures import (
    SMOLTALK2_ID,
    SMOLTALK2_SFT_CONFIG,
    SMOLTALK2_SFT_SPLITS,
    describe_mixture,
    is_think_split,
    mix_loaded_splits,
    published_think_share,
    smoltalk2_mixture,
)

COURSE_RECIPE = "recipes/smollm3_course.yaml"


class MissingSplitError(KeyError):
    """The requested split does not exist in the dataset; the message lists the splits that do."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def available_splits(dataset_name: str, dataset_config: str | None) -> list[str] | None:
    """Split names of a dataset (from the hub, or offline from the local cache); `None` when they cannot be read."""
    from datasets import get_dataset_split_names

    try:
        return list(get_dataset_split_names(dataset_name, dataset_config))
    except Exception:  # unreachable hub, gated repo, unusual layout: let `load_dataset` report it as stock TRL does
        return None


def is_smoltalk2_sft(dataset_name: str | None, dataset_config: str | None) -> bool:
    return dataset_name == SMOLTALK2_ID and dataset_config == SMOLTALK2_SFT_CONFIG


def resolve_dataset_splits(script_args: Any, dataset_args: Any, *, verbose: bool = True) -> bool:
    """Check `dataset_train_split` before `trl sft` loads the dataset; train SmolTalk2 `SFT` on SmolLM3's mixture.

    Returns `True` when the SmolTalk2 mixture replaced the missing `train` split (`dataset_args.datasets` is set).

    Raises:
        MissingSplitError: the train split does not exist (and this is not SmolTalk2's `SFT` asked for `train`).
    """
    if dataset_args is None or getattr(dataset_args, "datasets", None) or not script_args.dataset_name:
        return False  # a `datasets:` mixture wins over `dataset_name` in `trl sft`; nothing to check
    name, config, split = script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
    splits = available_splits(name, config)
    if splits is None or split in splits:
        return False
    if not (is_smoltalk2_sft(name, config) and split == "train"):
        where = f"{name}" + (f" (config {config})" if config else "")
        raise MissingSplitError(
            f"Split `{split}` not found in {where}. Available splits: {', '.join(splits)}. Choose one with "
            f"`--dataset_train_split <split>` (`dataset_train_split:` in a recipe), or mix several with a `datasets:` "
            "list (TRL's DatasetMixtureConfig)."
        )
    dataset_args.datasets = smoltalk2_mixture(think_share=getattr(dataset_args, "think_share", None))
    if verbose and int(os.environ.get("RANK", "0")) == 0:
        print(mixture_line(dataset_args.datasets), flush=True)
    return True


# How to choose other data, in the words of each entry point.
CHOOSE_OTHERS_CLI = (
    "`--dataset_train_split <split>` for one split, or a `datasets:` list with `think_share` in a recipe "
    "(recipes/smollm3_*.yaml)"
)


def mixture_line(datasets: list, choose_others: str = CHOOSE_OTHERS_CLI) -> str:
    """The one line that says which splits and weights replace the missing `train` split, how to choose others, and
    where the course's settings are."""
    share = sum(d.fraction for d in datasets if is_think_split(d.split)) / sum(d.fraction for d in datasets)
    published = published_think_share()
    share_text = f"{share:.1%} reasoning rows"
    if abs(share - published) >= 5e-4:
        share_text += f", {published:.1%} published"
    return (
        f"trl-smol: {SMOLTALK2_ID} ({SMOLTALK2_SFT_CONFIG}) has no `train` split; training on SmolLM3's SFT mixture "
        f"of {len(datasets)} splits ({share_text}; weights from alignment-handbook recipes/smollm3/sft/sft.yaml): "
        f"{describe_mixture(datasets)}. To choose others: {choose_others}. Hyperparameters stay as you set them; the "
        f"course's settings (learning rate, 10% warmup, validation loss, sample prompts) are in {COURSE_RECIPE}."
    )


def smoltalk2_train(
    dataset_dict: Mapping[str, Any],
    think_share: float | None = None,
    seed: int | None = None,
    *,
    weights: Mapping[str, float] | None = None,
):
    """SmolLM3's SFT mixture built from SmolTalk2's loaded `SFT` config (`load_dataset(smoltalk2, "SFT")`).

    Args:
        dataset_dict: the `DatasetDict` of SmolTalk2's `SFT` config (all or some of its 25 splits).
        think_share: share of rows from reasoning (`*_think`) splits; `None` keeps the published share (13.8%).
        seed: `None` takes the first rows of each split, as `trl sft` does, so both train on the same rows; an
            integer takes a seeded random subset of each split instead, as the alignment-handbook recipe did.
        weights: per-split weights replacing the published ones (see [`smoltalk2_mixture`]).

    Returns:
        One `datasets.Dataset` with the `messages` and `chat_template_kwargs` columns, for `train_dataset=`.
    """
    splits = [split for split in dataset_dict if split in SMOLTALK2_SFT_SPLITS]
    if not splits:
        raise MissingSplitError(
            f"smoltalk2_train needs SmolTalk2's `{SMOLTALK2_SFT_CONFIG}` splits ({SMOLTALK2_ID}); the dataset has "
            f"{', '.join(dataset_dict) or 'no splits'}. Load it with load_dataset('{SMOLTALK2_ID}', "
            f"'{SMOLTALK2_SFT_CONFIG}')."
        )
    configs = smoltalk2_mixture(weights=weights, think_share=think_share, splits=splits)
    loaded = dataset_dict
    if seed is not None:
        loaded = {split: dataset_dict[split].shuffle(seed=seed) for split in splits}
    return mix_loaded_splits(loaded, configs)


def after_parse(outputs: tuple) -> None:
    """Called by [`trl_smol.parser.SmolTrlParser`] once `trl sft`'s arguments are parsed (script process only): the
    local data files are checked ([`check_local_data_files`]), then the train split ([`resolve_dataset_splits`])."""
    from transformers import TrainingArguments
    from trl.scripts.utils import DatasetMixtureConfig, ScriptArguments

    def first(kind):
        return next((o for o in outputs if dataclasses.is_dataclass(o) and isinstance(o, kind)), None)

    script_args, dataset_args = first(ScriptArguments), first(DatasetMixtureConfig)
    if script_args is not None and dataset_args is not None:
        check_local_data_files(script_args, dataset_args, first(TrainingArguments))
        resolve_dataset_splits(script_args, dataset_args)
