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
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

from .mixtures import (
    SMOLTALK2_ID,
    SMOLTALK2_SFT_CONFIG,
    describe_mixture,
    is_think_split,
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
    if verbose and _is_main_process():
        print(mixture_line(dataset_args.datasets), flush=True)
        if changes:
            print(f"trl-smol: course defaults for what you left unset: {'; '.join(changes)}.", flush=True)
    return True


def mixture_line(datasets: list) -> str:
    """The one line that says which splits and weights replace the missing `train` split, and how to choose others."""
    share = sum(d.fraction for d in datasets if is_think_split(d.split)) / sum(d.fraction for d in datasets)
    published = published_think_share()
    share_text = f"{share:.1%} reasoning rows"
    if abs(share - published) >= 5e-4:
        share_text += f", {published:.1%} published"
    return (
        f"trl-smol: {SMOLTALK2_ID} ({SMOLTALK2_SFT_CONFIG}) has no `train` split; training on SmolLM3's SFT mixture "
        f"of {len(datasets)} splits ({share_text}; weights from alignment-handbook recipes/smollm3/sft/sft.yaml): "
        f"{describe_mixture(datasets)}. To choose others: `--dataset_train_split <split>` for one split, or a "
        "`datasets:` list with `think_share` in a recipe (recipes/smollm3_*.yaml)."
    )


def apply_course_defaults(script_args: Any, training_args: Any, model_args: Any, dataset_args: Any) -> list[str]:
    """Fill, where the user set nothing, the course's guidance. Returns a description of each change."""
    from transformers.trainer_utils import IntervalStrategy

    from .config import explicit_fields

    explicit = explicit_fields(training_args)
    dataset_explicit = getattr(dataset_args, "_explicit_fields", frozenset())
    changes: list[str] = []

    if "warmup_steps" not in explicit:
        training_args.warmup_steps = COURSE_WARMUP_STEPS
        changes.append(f"warmup_steps={COURSE_WARMUP_STEPS} (10% of the steps)")

    method = training_method(model_args)
    if "learning_rate" not in explicit:
        training_args.learning_rate = COURSE_LEARNING_RATES[method]
        changes.append(f"learning_rate={COURSE_LEARNING_RATES[method]:g} ({method})")

    eval_wanted = "eval_strategy" not in explicit or _strategy(training_args.eval_strategy) != "no"
    if eval_wanted and script_args.dataset_test_split == "test" and "test_split_size" not in dataset_explicit:
        if dataset_args.test_split_size is None:
            dataset_args.test_split_size = COURSE_EVAL_SHARE
        if "eval_strategy" not in explicit:
            steps = _eval_interval(training_args)
            training_args.eval_strategy = IntervalStrategy.STEPS
            training_args.eval_steps = steps
            training_args.do_eval = True
            changes.append(f"validation loss on {dataset_args.test_split_size:.1%} held out, every {steps} steps")

    if _samples_available() and "sample_prompts" not in explicit and training_args.sample_prompts is None:
        training_args.sample_prompts = [dict(prompt) for prompt in COURSE_SAMPLE_PROMPTS]
        if "sample_every_n_steps" not in explicit:
            training_args.sample_every_n_steps = _eval_interval(training_args)
        changes.append(
            f"{len(COURSE_SAMPLE_PROMPTS)} sample prompts (think and no_think) every "
            f"{training_args.sample_every_n_steps} steps (`sample_prompts` to change)"
        )
    return changes


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
