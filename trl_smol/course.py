"""The SmolLM3 SFT course example, run as written: SmolTalk2's missing `train` split, and the course defaults.

The course ("Supervised Fine-Tuning with SmolLM3") trains with

```bash
trl sft --model_name_or_path HuggingFaceTB/SmolLM3-3B-Base --dataset_name HuggingFaceTB/smoltalk2 \\
    --dataset_config SFT --output_dir ./smollm3-sft-model --per_device_train_batch_size 4 --learning_rate 5e-5 \\
    --max_steps 1000 --logging_steps 50 --save_steps 200 --report_to trackio
```

SmolTalk2's `SFT` config has 25 named splits and no `train` split, so stock TRL stops with `KeyError: 'train'`. After
the recipe parser has read the arguments, [`resolve_dataset_splits`] checks the requested train split:

- SmolTalk2 `SFT` asked for `train`: the run trains on SmolLM3's published SFT mixture instead
  ([`trl_smol.mixtures.smoltalk2_mixture`], through TRL's own `datasets:` mixture path) and prints one line saying
  which splits, which weights and how to choose others. The course's guidance then fills what the user left unset
  ([`apply_course_defaults`]): warmup over 10% of the steps, the learning rate of the training method, validation loss
  on a held-out slice, and a few sample prompts.
- any other dataset with a missing split: [`MissingSplitError`] listing the splits that exist.

The course's Python example does the same in a script:

```python
from datasets import load_dataset
from trl_smol import SFTConfig, SFTTrainer   # the one line changed: `from trl import ...`

dataset = load_dataset("HuggingFaceTB/smoltalk2", "SFT")
trainer = SFTTrainer(model=model, tokenizer=tokenizer, train_dataset=dataset["train"], args=SFTConfig(...))
```

Once `trl_smol`'s trainer is imported, `load_dataset` returns SmolTalk2's `SFT` config as a [`SmolTalk2SFTDict`]
(see `trl_smol.integration.patch_datasets`): its missing `train` split is the same mixture, announced by the same
line, and a trainer given that mixture without an `eval_dataset` applies the same course defaults
([`apply_course_defaults_to_trainer`]), holding out the validation slice itself.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

from datasets import DatasetDict

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

# Course guidance: "warmup 10% of steps". transformers 5 removed `warmup_ratio`; a `warmup_steps` below 1 is a ratio.
COURSE_WARMUP_STEPS = 0.1
# Learning rate by method. Full fine-tuning: 5e-5, the course's value for SmolLM3 (its range is 5e-5 to 1e-4).
# LoRA/QLoRA train far fewer parameters and need a higher rate: 2e-4 is the value of TRL's own LoRA example
# (trl/scripts/sft.py, 10x its full fine-tuning example), the ratio TRL's "LoRA Without Regret" guide recommends.
COURSE_LEARNING_RATES = {"full": 5e-5, "lora": 2e-4, "qlora": 2e-4}
# Share of the mixture held out for validation loss (about 1.4k conversations of the published mixture; at least one
# row on tiny local copies, since `train_test_split` rounds the test size up).
COURSE_EVAL_SHARE = 0.001
# Prompts to sample during a course run when the user gave none: both reasoning modes, so the effect of the
# `enable_thinking` data is visible from the first samples on.
COURSE_SAMPLE_PROMPTS: list[dict[str, Any]] = [
    {
        "messages": [{"role": "user", "content": "Give me three tips for learning a new language."}],
        "chat_template_kwargs": {"enable_thinking": False},
    },
    {
        "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
        "chat_template_kwargs": {"enable_thinking": False},
    },
    {
        "messages": [{"role": "user", "content": "What is 17 * 23? Explain briefly."}],
        "chat_template_kwargs": {"enable_thinking": True},
    },
]


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


def training_method(model_args: Any) -> str:
    """`"qlora"`, `"lora"` or `"full"`, from TRL's `ModelConfig`."""
    if getattr(model_args, "use_peft", False):
        return "qlora" if getattr(model_args, "load_in_4bit", False) else "lora"
    return "full"


def resolve_dataset_splits(
    script_args: Any, training_args: Any, model_args: Any, dataset_args: Any, *, verbose: bool = True
) -> bool:
    """Check `dataset_train_split` before `trl sft` loads the dataset; fall back to the SmolLM3 mixture for SmolTalk2.

    Returns `True` when the SmolTalk2 mixture (and the course defaults) were applied.

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
    changes = apply_course_defaults(script_args, training_args, model_args, dataset_args)
    if verbose:
        if _is_main_process():
            print(mixture_line(dataset_args.datasets), flush=True)
        announce_course_defaults(changes)
    return True


# How to choose other data, in the words of each entry point.
CHOOSE_OTHERS_CLI = (
    "`--dataset_train_split <split>` for one split, or a `datasets:` list with `think_share` in a recipe "
    "(recipes/smollm3_*.yaml)"
)
CHOOSE_OTHERS_PYTHON = (
    "`dataset['<split>']` for one split, or `trl.get_dataset(DatasetMixtureConfig(datasets=trl_smol.data."
    "smoltalk2_mixture(weights=..., think_share=...)))`"
)


def mixture_line(datasets: list, choose_others: str = CHOOSE_OTHERS_CLI) -> str:
    """The one line that says which splits and weights replace the missing `train` split, and how to choose others."""
    share = sum(d.fraction for d in datasets if is_think_split(d.split)) / sum(d.fraction for d in datasets)
    published = published_think_share()
    share_text = f"{share:.1%} reasoning rows"
    if abs(share - published) >= 5e-4:
        share_text += f", {published:.1%} published"
    return (
        f"trl-smol: {SMOLTALK2_ID} ({SMOLTALK2_SFT_CONFIG}) has no `train` split; training on SmolLM3's SFT mixture "
        f"of {len(datasets)} splits ({share_text}; weights from alignment-handbook recipes/smollm3/sft/sft.yaml): "
        f"{describe_mixture(datasets)}. To choose others: {choose_others}."
    )


def apply_course_defaults(script_args: Any, training_args: Any, model_args: Any, dataset_args: Any) -> list[str]:
    """Fill, where the user set nothing, the course's guidance for `trl sft`. Returns a description of each change."""
    explicit = _explicit(training_args)
    dataset_explicit = getattr(dataset_args, "_explicit_fields", frozenset())
    held_out = None
    if _eval_wanted(training_args, explicit) and script_args.dataset_test_split == "test":
        if "test_split_size" not in dataset_explicit:
            if dataset_args.test_split_size is None:
                dataset_args.test_split_size = COURSE_EVAL_SHARE
            held_out = dataset_args.test_split_size
    return fill_course_defaults(training_args, training_method(model_args), held_out=held_out, explicit=explicit)


def fill_course_defaults(
    training_args: Any, method: str, *, held_out: float | None, explicit: frozenset[str]
) -> list[str]:
    """Warmup, learning rate by `method`, a validation schedule when `held_out` (a share of the data) is evaluated,
    and sample prompts: each only where the user set nothing (`explicit`, read before any change). Returns a
    description of each change."""
    from transformers.trainer_utils import IntervalStrategy

    changes: list[str] = []

    if "warmup_steps" not in explicit:
        training_args.warmup_steps = COURSE_WARMUP_STEPS
        changes.append(f"warmup_steps={COURSE_WARMUP_STEPS} (10% of the steps)")

    if "learning_rate" not in explicit:
        training_args.learning_rate = COURSE_LEARNING_RATES[method]
        changes.append(f"learning_rate={COURSE_LEARNING_RATES[method]:g} ({method})")

    if held_out is not None and "eval_strategy" not in explicit:
        steps = _eval_interval(training_args)
        training_args.eval_strategy = IntervalStrategy.STEPS
        training_args.eval_steps = steps
        training_args.do_eval = True
        changes.append(f"validation loss on {held_out:.1%} held out, every {steps} steps")

    if _samples_available() and "sample_prompts" not in explicit and training_args.sample_prompts is None:
        training_args.sample_prompts = [dict(prompt) for prompt in COURSE_SAMPLE_PROMPTS]
        if "sample_every_n_steps" not in explicit:
            training_args.sample_every_n_steps = _eval_interval(training_args)
        changes.append(
            f"{len(COURSE_SAMPLE_PROMPTS)} sample prompts (think and no_think) every "
            f"{training_args.sample_every_n_steps} steps (`sample_prompts` to change)"
        )
    return changes


def announce_course_defaults(changes: list[str]) -> None:
    if changes and _is_main_process():
        print(f"trl-smol: course defaults for what you left unset: {'; '.join(changes)}.", flush=True)


# --- the Python example: `load_dataset("HuggingFaceTB/smoltalk2", "SFT")["train"]` ---------------------------------

# Fingerprints of the mixtures handed out by `SmolTalk2SFTDict["train"]`: the trainer recognises them (a fingerprint
# survives being passed around, and holds no reference to the data).
_COURSE_MIXTURES: set[str] = set()


class SmolTalk2SFTDict(DatasetDict):
    """SmolTalk2's `SFT` config as `load_dataset` returns it, whose missing `train` split is SmolLM3's SFT mixture.

    Its keys are the 25 real splits, as in `datasets`; only a lookup of `train`, which would raise `KeyError`, builds
    the mixture ([`trl_smol.mixtures.smoltalk2_mixture`], from the splits already loaded) and prints the same one line
    as `trl sft`. Any other missing split raises [`MissingSplitError`] listing the real ones.

    ```python
    >>> dataset = load_dataset("HuggingFaceTB/smoltalk2", "SFT")   # after `import trl_smol.trainer`
    >>> train = dataset["train"]
    trl-smol: HuggingFaceTB/smoltalk2 (SFT) has no `train` split; training on SmolLM3's SFT mixture of 25 splits ...
    ```
    """

    def __missing__(self, key: Any) -> Any:
        if str(key) != "train":
            raise MissingSplitError(
                f"Split `{key}` not found in {SMOLTALK2_ID} (config {SMOLTALK2_SFT_CONFIG}). Available splits: "
                f"{', '.join(self)}. Take one (`dataset['{next(iter(self), 'train')}']`), or `dataset['train']` for "
                "SmolLM3's mixture of all of them (trl_smol.mixtures.smoltalk2_mixture to choose weights)."
            )
        mixture = self.__dict__.get("_mixture")
        if mixture is None:
            configs = smoltalk2_mixture(splits=[split for split in self if split in SMOLTALK2_SFT_SPLITS])
            mixture = mix_loaded_splits(self, configs)
            _COURSE_MIXTURES.add(mixture._fingerprint)
            self.__dict__["_mixture"] = mixture
            if _is_main_process():
                print(mixture_line(configs, CHOOSE_OTHERS_PYTHON), flush=True)
        return mixture


def wrap_smoltalk2_splits(builder: Any, split: Any, result: Any) -> Any:
    """`DatasetBuilder.as_dataset`'s result, as a [`SmolTalk2SFTDict`] when it is SmolTalk2's `SFT` without `train`."""
    if split is not None or type(result) is not DatasetDict or "train" in result:
        return result
    repo_id = getattr(builder, "repo_id", None) or ""
    config_name = getattr(getattr(builder, "config", None), "name", None)
    if not (is_smoltalk2_sft(repo_id, config_name) and set(result) & set(SMOLTALK2_SFT_SPLITS)):
        return result
    return SmolTalk2SFTDict(result)


def is_course_mixture(dataset: Any) -> bool:
    """Whether `dataset` is the mixture a [`SmolTalk2SFTDict`] returned for `train`."""
    return getattr(dataset, "_fingerprint", None) in _COURSE_MIXTURES


def apply_course_defaults_to_trainer(
    args: Any, train_dataset: Any, eval_dataset: Any, method: str
) -> tuple[Any, Any, list[str]]:
    """The course defaults for a trainer built on the course mixture (Python example). Without an `eval_dataset`,
    [`COURSE_EVAL_SHARE`] of the mixture is held out (seeded with `args.seed`) for the validation loss.

    Returns the train and eval datasets to use and a description of each change.
    """
    explicit = _explicit(args)
    held_out = None
    if eval_dataset is None and _eval_wanted(args, explicit):
        split = train_dataset.train_test_split(test_size=COURSE_EVAL_SHARE, seed=args.seed)
        train_dataset, eval_dataset = split["train"], split["test"]
        held_out = COURSE_EVAL_SHARE
    return train_dataset, eval_dataset, fill_course_defaults(args, method, held_out=held_out, explicit=explicit)


def _explicit(training_args: Any) -> frozenset[str]:
    from .config import explicit_fields

    return explicit_fields(training_args)


def _eval_wanted(training_args: Any, explicit: frozenset[str]) -> bool:
    return "eval_strategy" not in explicit or _strategy(training_args.eval_strategy) != "no"


def _eval_interval(training_args: Any) -> int:
    """Evaluate (and sample) at every checkpoint when saving by steps, else at every log."""
    save_steps = getattr(training_args, "save_steps", 0) or 0
    if _strategy(training_args.save_strategy) == "steps" and save_steps >= 1:
        return int(save_steps)
    return max(1, int(training_args.logging_steps or 1))


def _strategy(value: Any) -> str:
    return str(getattr(value, "value", value))


def _samples_available() -> bool:
    return importlib.util.find_spec("trl_smol.callbacks.samples") is not None


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def after_parse(outputs: tuple) -> None:
    """Hook called by [`trl_smol.parser.SmolTrlParser`] once `trl sft`'s arguments are parsed (script process only)."""
    from trl.scripts.utils import DatasetMixtureConfig, ScriptArguments
    from trl.trainer.model_config import ModelConfig

    from .config import SmolSFTConfig

    def first(kind):
        return next((o for o in outputs if dataclasses.is_dataclass(o) and isinstance(o, kind)), None)

    script_args, training_args = first(ScriptArguments), first(SmolSFTConfig)
    model_args, dataset_args = first(ModelConfig), first(DatasetMixtureConfig)
    if script_args is None or training_args is None or dataset_args is None:
        return
    resolve_dataset_splits(script_args, training_args, model_args, dataset_args)
