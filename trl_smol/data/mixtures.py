"""SmolTalk2's `SFT` config as SmolLM3 was trained on it, as a TRL dataset mixture.

SmolTalk2 (`HuggingFaceTB/smoltalk2`, config `SFT`) has 25 named splits and no `train` split. SmolLM3's SFT stage
used all 25, each with a *weight*: the fraction of that split's rows it kept. Source of the split names, row counts and
weights: the SmolTalk2 dataset card ("Dataset Stats", SFT table) and the alignment-handbook recipe it links,
`recipes/smollm3/sft/sft.yaml` (`dataset_mixture`). In total the published mixture takes about 1.44M of the 3.38M rows;
13.8% of the rows taken come from the 10 reasoning (`*_think`) splits.

TRL expresses a mixture as `DatasetMixtureConfig.datasets` with one `DatasetConfig` per split, whose `fraction` is the
split's target share of the mixture. [`smoltalk2_mixture`] sets `fraction = weight x published rows`, so that on the
real dataset TRL keeps exactly the number of rows the recipe kept (TRL takes the first rows of each split, where the
handbook took a seeded random subset).

```python
from trl import DatasetMixtureConfig, get_dataset
from trl_smol.data import smoltalk2_mixture

datasets = smoltalk2_mixture()                               # the published mixture
datasets = smoltalk2_mixture(think_share=0.5)                # half of the rows with reasoning traces
datasets = smoltalk2_mixture(weights={"s1k_1.1_think": 0})   # drop a split, keep the others as published
dataset = get_dataset(DatasetMixtureConfig(datasets=datasets, test_split_size=0.001))
```

In a recipe, the same knob is the top-level key `think_share` (read by [`SmolDatasetMixtureConfig`]).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trl.scripts.utils import DatasetConfig, DatasetMixtureConfig

from ..launch import entered_through_trl_sft
from .input_files import check_mixture_files

SMOLTALK2_ID = "HuggingFaceTB/smoltalk2"
SMOLTALK2_SFT_CONFIG = "SFT"
SMOLTALK2_COLUMNS = ("messages", "chat_template_kwargs")
SOURCE = (
    "SmolTalk2 dataset card (huggingface.co/datasets/HuggingFaceTB/smoltalk2, SFT table) and alignment-handbook "
    "recipes/smollm3/sft/sft.yaml"
)


@dataclass(frozen=True)
class MixtureSplit:
    """One split of the published SmolLM3 SFT mixture."""

    split: str
    weight: float  # fraction of the split's rows the SmolLM3 recipe kept
    rows: int  # rows in the split, from the dataset card

    @property
    def think(self) -> bool:
        return is_think_split(self.split)


# The 25 splits of the `SFT` config, in the order of the alignment-handbook recipe.
SMOLLM3_SFT_MIXTURE: tuple[MixtureSplit, ...] = (
    MixtureSplit("smoltalk_smollm3_everyday_conversations_no_think", 1.0, 2260),
    MixtureSplit("smoltalk_smollm3_systemchats_30k_no_think", 1.0, 33997),
    MixtureSplit("tulu_3_sft_personas_instruction_following_no_think", 1.0, 29970),
    MixtureSplit("hermes_function_calling_v1_no_think", 1.0, 8961),
    MixtureSplit("smoltalk_smollm3_smol_magpie_ultra_no_think", 0.5, 406843),
    MixtureSplit("smoltalk_multilingual_8languages_lang_5_no_think", 1.0, 254047),
    MixtureSplit("table_gpt_no_think", 1.0, 13203),
    MixtureSplit("OpenHermes_2.5_no_think", 0.5, 384900),
    MixtureSplit("OpenThoughts3_1.2M_no_think_no_think", 0.4, 435193),
    MixtureSplit("Mixture_of_Thoughts_science_no_think", 1.0, 86110),
    MixtureSplit("smoltalk_smollm3_explore_instruct_rewriting_no_think", 1.0, 30391),
    MixtureSplit("smoltalk_smollm3_smol_rewrite_no_think", 1.0, 53262),
    MixtureSplit("smoltalk_smollm3_smol_summarize_no_think", 1.0, 96061),
    MixtureSplit("LongAlign_64k_context_lang_annotated_lang_6_no_think", 1.0, 6249),
    MixtureSplit("multi_turn_reasoning_if_think", 1.0, 28217),
    MixtureSplit("smoltalk_everyday_convs_reasoning_Qwen3_32B_think", 1.0, 2057),
    MixtureSplit("smoltalk_systemchats_Qwen3_32B_think", 1.0, 27436),
    MixtureSplit("xlam_traces_no_think", 1.0, 59962),
    MixtureSplit("smolagents_toolcalling_traces_think", 1.0, 9079),
    MixtureSplit("s1k_1.1_think", 1.0, 835),
    MixtureSplit("LongAlign_64k_Qwen3_32B_yarn_131k_think", 1.0, 7526),
    MixtureSplit("aya_dataset_Qwen3_32B_think", 1.0, 15222),
    MixtureSplit("smoltalk_multilingual8_Qwen3_32B_think", 0.3, 244736),
    MixtureSplit("OpenThoughts3_1.2M_think", 0.02, 1133524),
    MixtureSplit("table_gpt_Qwen3_32B_think", 1.0, 13201),
)
SMOLTALK2_SFT_SPLITS: tuple[str, ...] = tuple(entry.split for entry in SMOLLM3_SFT_MIXTURE)


def is_think_split(split: str) -> bool:
    """SmolTalk2 names reasoning splits `*_think` and the others `*_no_think`."""
    return split.endswith("_think") and not split.endswith("_no_think")


def published_think_share() -> float:
    """Share of rows with reasoning traces in the published mixture (about 0.138)."""
    taken = [(entry.weight * entry.rows, entry.think) for entry in SMOLLM3_SFT_MIXTURE]
    return sum(rows for rows, think in taken if think) / sum(rows for rows, _ in taken)


def smoltalk2_mixture(
    weights: Mapping[str, float] | None = None,
    think_share: float | None = None,
    splits: Iterable[str] | None = None,
    *,
    path: str = SMOLTALK2_ID,
    name: str = SMOLTALK2_SFT_CONFIG,
    columns: Sequence[str] | None = SMOLTALK2_COLUMNS,
) -> list[DatasetConfig]:
    """SmolLM3's SFT mixture of SmolTalk2, as a list usable directly as `DatasetMixtureConfig.datasets`.

    Args:
        weights: per-split weights that replace the published ones (fraction of the split's rows to keep, as in the
            SmolLM3 recipe; values above 1 repeat nothing, they only raise the split's share). A weight of 0 drops
            the split.
        think_share: share of the mixture's rows that come from reasoning (`*_think`) splits, between 0 and 1. The
            splits keep their relative proportions inside the think and no_think groups. `None`: the published share
            (see [`published_think_share`]).
        splits: keep only these splits (default: all 25).
        path, name: the dataset and config to read, e.g. a local copy with the same split names.
        columns: columns to keep from every split; `None` keeps all of them.

    Returns:
        `trl.scripts.utils.DatasetConfig` objects whose `fraction` is `weight x published rows` (TRL normalises them).
    """
    known = {entry.split: entry for entry in SMOLLM3_SFT_MIXTURE}
    for split in list(weights or {}) + list(splits or []):
        if split not in known:
            raise ValueError(
                f"`{split}` is not a split of {SMOLTALK2_ID}'s {SMOLTALK2_SFT_CONFIG} config. Valid splits: "
                f"{', '.join(SMOLTALK2_SFT_SPLITS)}."
            )
    selected = set(splits) if splits is not None else set(known)
    configs = []
    for entry in SMOLLM3_SFT_MIXTURE:
        weight = (weights or {}).get(entry.split, entry.weight)
        if weight < 0:
            raise ValueError(f"Weight of `{entry.split}` is {weight}; weights must be >= 0.")
        if entry.split not in selected or weight == 0:
            continue
        configs.append(
            DatasetConfig(
                path=path,
                name=name,
                split=entry.split,
                columns=list(columns) if columns is not None else None,
                fraction=weight * entry.rows,
            )
        )
    if not configs:
        raise ValueError("The SmolTalk2 mixture is empty: every split was dropped by `splits` or a weight of 0.")
    if think_share is not None:
        configs = rescale_think_share(configs, think_share)
    return configs


def rescale_think_share(datasets: list[DatasetConfig], think_share: float) -> list[DatasetConfig]:
    """Scale the `fraction`s so that `think_share` of the rows come from `*_think` splits (in place, and returned)."""
    if not 0.0 <= think_share <= 1.0:
        raise ValueError(f"think_share={think_share} must be between 0 and 1.")
    if any(dataset.fraction is None for dataset in datasets):
        missing = next(dataset for dataset in datasets if dataset.fraction is None)
        raise ValueError(
            f"think_share needs a `fraction` on every entry of `datasets`; `{missing.path}` split `{missing.split}` "
            "has none. Give every entry a fraction, or build the list with trl_smol.data.smoltalk2_mixture()."
        )
    think = sum(dataset.fraction for dataset in datasets if is_think_split(dataset.split))
    other = sum(dataset.fraction for dataset in datasets if not is_think_split(dataset.split))
    for kind, group_total, wanted in (("`*_think`", think, think_share), ("other", other, 1 - think_share)):
        if wanted > 0 and group_total == 0:
            raise ValueError(f"think_share={think_share} asks for {kind} rows, but the mixture has no such split.")
    total = think + other
    for dataset in datasets:
        group_total, wanted = (think, think_share) if is_think_split(dataset.split) else (other, 1.0 - think_share)
        dataset.fraction = dataset.fraction / group_total * wanted * total if group_total else 0.0
    return datasets


def describe_mixture(datasets: Sequence[DatasetConfig]) -> str:
    """`split=share%` for every entry, largest share first, e.g. for a one-line log message."""
    fractions = [dataset.fraction or 0.0 for dataset in datasets]
    total = sum(fractions) or 1.0
    parts = sorted(zip(datasets, fractions, strict=True), key=lambda item: -item[1])
    return ", ".join(f"{dataset.split}={100 * fraction / total:.2g}%" for dataset, fraction in parts)


@dataclass
class SmolDatasetMixtureConfig(DatasetMixtureConfig):
    """TRL's `DatasetMixtureConfig` plus the `think_share` knob, so a recipe can set the share of reasoning data.

    ```yaml
    datasets:                # e.g. the SmolTalk2 entries of recipes/smollm3_qlora.yaml
      - {path: HuggingFaceTB/smoltalk2, name: SFT, split: s1k_1.1_think, fraction: 835.0}
      - ...
    think_share: 0.3         # 30% of the rows from `*_think` splits; null keeps the listed fractions
    ```
    """

    think_share: float | None = field(
        default=None,
        metadata={
            "help": "Share of the mixture's rows taken from reasoning (`*_think`) splits, between 0 and 1; the "
            "`fraction`s of `datasets` are rescaled to it. Unset: the fractions as listed (for SmolTalk2: the "
            "published SmolLM3 mixture, 0.138)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.think_share is not None and self.datasets:
            rescale_think_share(self.datasets, self.think_share)


class MixtureColumnsError(ValueError):
    """Two datasets of a mixture have different columns: concatenating them would leave holes in every row."""


def check_mixture_columns(mixture: DatasetMixtureConfig) -> None:
    """Raise [`MixtureColumnsError`] naming the first two mixture entries whose columns disagree.

    `datasets.concatenate_datasets` aligns differing columns by filling them with nulls, so a mixture of, say, a
    `messages` split and a `text` split would train on half-empty rows. Each entry is loaded as TRL loads it (the
    second load, in `trl.get_dataset`, then comes from the cache). Streaming mixtures are not checked.
    """
    import datasets

    if mixture.streaming or len(mixture.datasets) < 2:
        return
    first_columns, first_name = None, None
    for config in mixture.datasets:
        dataset = datasets.load_dataset(
            path=config.path,
            name=config.name,
            data_dir=config.data_dir,
            data_files=config.data_files,
            split=config.split,
        )
        columns = sorted(config.columns if config.columns is not None else dataset.column_names)
        name = f"{config.path}" + (f" ({config.name})" if config.name else "") + f" split `{config.split}`"
        if first_columns is None:
            first_columns, first_name = columns, name
        elif columns != first_columns:
            raise MixtureColumnsError(
                f"The dataset mixture mixes columns: {first_name} has {first_columns} but {name} has {columns}. "
                "Give every entry the same columns, e.g. with `columns: [messages, chat_template_kwargs]`, or convert "
                "the data first."
            )


def get_dataset(mixture: DatasetMixtureConfig):
    """TRL's `get_dataset` after checking the mixture's local files ([`check_mixture_files`]: empty, not UTF-8, not
    JSON lines, no `messages` column where the entry keeps one) and [`check_mixture_columns`]; `trl sft` uses it when
    the plugin is active. In `trl sft` the files were already checked once the recipe was parsed
    (`trl_smol.data.smoltalk2.after_parse`), so they are not read twice."""
    from trl.scripts.utils import get_dataset as trl_get_dataset

    if not entered_through_trl_sft():
        check_mixture_files(mixture.datasets)
    check_mixture_columns(mixture)
    return trl_get_dataset(mixture)


def mix_loaded_splits(splits: Mapping[str, Any], datasets: Sequence[DatasetConfig]) -> Any:
    """The mixture `datasets` taken from splits already in memory (e.g. a `DatasetDict` from `load_dataset`).

    Gives the rows `trl.get_dataset` would give for the same entries (same column selection, same rule for `fraction`:
    shares normalised to one, the mixture as large as possible without repeating rows, the first rows of each split),
    without loading every split a second time.
    """
    import datasets as hf_datasets

    selected = []
    for config in datasets:
        dataset = splits[config.split]
        selected.append(dataset.select_columns(config.columns) if config.columns is not None else dataset)
    fractions = [config.fraction for config in datasets]
    if all(fraction is not None for fraction in fractions):
        weights = [fraction / sum(fractions) for fraction in fractions]
        total = min(len(dataset) / weight for dataset, weight in zip(selected, weights, strict=True) if weight > 0)
        selected = [
            dataset.select(range(round(weight * total))) for dataset, weight in zip(selected, weights, strict=True)
        ]
    return hf_datasets.concatenate_datasets(selected)
