"""`SmolSFTTrainer`: TRL's `SFTTrainer` with SmolLM3 templating, sample generation and memory presets.

A drop-in replacement: a script that imports `SmolSFTTrainer` / `SmolSFTConfig` (or `SFTTrainer` / `SFTConfig` from
`trl_smol`) in place of TRL's runs unchanged, and gains the plugin's features when its config asks for them.

```python
from datasets import load_dataset
from trl_smol import SmolSFTConfig, SmolSFTTrainer

trainer = SmolSFTTrainer(
    model="HuggingFaceTB/SmolLM3-3B-Base",
    args=SmolSFTConfig(output_dir="smollm3-sft", memory_preset="auto", sample_prompts=["Hi!"]),
    train_dataset=load_dataset("json", data_files="chats.jsonl", split="train"),
)
trainer.train()
```
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from datasets import DatasetDict, IterableDatasetDict
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainingArguments
from transformers.utils import logging
from trl.trainer.sft_trainer import SFTTrainer

from . import __version__
from .callbacks import load_callback
from .config import SmolSFTConfig
from .distributed import settle_process_group
from .integration import ACTIVE_ENV, patch_datasets
from .models import resolve_model_name

logger = logging.get_logger(__name__)

# `load_dataset("HuggingFaceTB/smoltalk2", "SFT")["train"]` (the course's Python example) becomes SmolLM3's mixture.
patch_datasets()


def _to_smol_config(args: TrainingArguments | None, model: Any) -> SmolSFTConfig:
    """Accept what `SFTTrainer` accepts for `args` and return a `SmolSFTConfig`."""
    if isinstance(args, SmolSFTConfig):
        return args
    if args is None:
        name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
        return SmolSFTConfig(f"{os.path.basename(str(name).rstrip('/'))}-SFT")
    values = {k: v for k, v in args.to_dict().items() if k in SmolSFTConfig.__dataclass_fields__}
    # to_dict masks every `*_token` field (hub_token, eos_token, pad_token): take their real values.
    values.update({key: getattr(args, key) for key in values if key.endswith("_token")})
    # A plain TrainingArguments has no SFT fields: TRL's SFT defaults apply to them, as in SFTTrainer.
    return SmolSFTConfig(**values)


class SmolSFTTrainer(SFTTrainer):
    """[`trl.SFTTrainer`] for SmolLM3. Takes the same arguments, plus `tokenizer` as an alias of `processing_class`.

    What it adds, each driven by [`SmolSFTConfig`]:
    - the SmolLM3 chat template, `<|im_end|>` as the stop token and a pad token distinct from it
      (`smol_chat_template`, `chat_template_kwargs`);
    - validation of conversations before tokenization (`invalid_rows`);
    - sample generation during training (`sample_prompts`, ...);
    - memory presets fitted to the hardware (`memory_preset`);
    - callbacks by name from the `trl_smol.callbacks` entry-point group (`callbacks`).
    """

    _tag_names = ["trl", "sft", "trl-smol", "smollm3"]

    def __init__(
        self,
        model: Any,
        args: TrainingArguments | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        *positional: Any,
        tokenizer: PreTrainedTokenizerBase | None = None,
        callbacks: list | None = None,
        peft_config: Any = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ):
        if tokenizer is not None:
            if processing_class is not None:
                raise ValueError("Pass either `processing_class` or its older name `tokenizer`, not both.")
            warnings.warn(
                "`tokenizer=` is deprecated in TRL; use `processing_class=`. trl-smol accepts it as an alias.",
                FutureWarning,
                stacklevel=2,
            )
            processing_class = tokenizer
        _reject_dataset_dict(train_dataset)

        args = _to_smol_config(args, model)
        self._smol_features: dict[str, str] = {}
        if getattr(args, "_bf16_off_for_machine", False):
            self._smol_features["precision"] = "float32 (bf16 left unset; no bf16 device here)"
        train_dataset, eval_dataset = _course_defaults(
            args, train_dataset, eval_dataset, peft_config, quantization_config, model
        )

        if isinstance(model, str):
            model = resolve_model_name(model)
        model_name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", None)

        _check_4bit_backend(quantization_config)
        # Memory preset: may change args, and choose LoRA / QLoRA when the run did not say.
        peft_config, quantization_config = self._apply_memory_preset(
            args, model_name, peft_config, quantization_config
        )

        # Chat template: decided before TRL sees the tokenizer, so that its eos/pad handling uses our choices.
        if processing_class is None and model_name is not None:
            processing_class = AutoTokenizer.from_pretrained(model_name, trust_remote_code=args.trust_remote_code)
        # Only chat data is templated: plain-text training keeps the tokenizer (and its eos) exactly as in TRL.
        if isinstance(processing_class, PreTrainedTokenizerBase) and _is_conversational(train_dataset):
            self._setup_chat_template(processing_class, args, model_name)

        callbacks = list(callbacks or []) + self._plugin_callbacks(args)
        super().__init__(
            model,
            args,
            data_collator,
            train_dataset,
            eval_dataset,
            processing_class,
            *positional,
            callbacks=callbacks,
            peft_config=peft_config,
            quantization_config=quantization_config,
            **kwargs,
        )
        self._logging_callbacks_first()
        self._print_banner()

    # --- features ------------------------------------------------------------------------------------------------
    def _apply_memory_preset(self, args: SmolSFTConfig, model_name: str | None, peft_config, quantization_config):
        if args.memory_preset == "none":
            return peft_config, quantization_config
        from .presets import apply_memory_preset

        result = apply_memory_preset(
            args, model_name=model_name, peft_config=peft_config, quantization_config=quantization_config
        )
        self._smol_features["memory_preset"] = result.tier
        self.memory_preset_result = result
        return result.peft_config, result.quantization_config

    def training_step(self, *args, **kwargs):
        # Out of memory: explain it (peak, estimate, smaller preset), or under `memory_preset: auto` with
        # `auto_find_batch_size` prepare a retry at half the batch and twice the accumulation (trl_smol.presets).
        try:
            return super().training_step(*args, **kwargs)
        except Exception as error:
            from .presets import handle_out_of_memory

            handle_out_of_memory(self, error)
            raise

    def _update_auto_batch_size(self, batch_size):
        # transformers' batch-size finder retries at 90%; after an OOM under `memory_preset: auto` we retry at half.
        from .presets import retry_batch_size

        super()._update_auto_batch_size(retry_batch_size(self, batch_size))

    def _setup_chat_template(self, tokenizer: PreTrainedTokenizerBase, args: SmolSFTConfig, model_name) -> None:
        from .chat_template import apply_smollm3_template, smollm3_template_reason

        reason = smollm3_template_reason(tokenizer, model_name, args.smol_chat_template)
        if reason is None:
            return
        apply_smollm3_template(tokenizer)
        if args.eos_token is None:
            args.eos_token = "<|im_end|>"  # TRL then updates the model config and generation_config too
        self._smol_features["chat_template"] = f"smollm3 ({reason})"

    def _plugin_callbacks(self, args: SmolSFTConfig) -> list:
        names = list(args.callbacks or [])
        if args.sample_prompts and "samples" not in names:
            names.insert(0, "samples")
        if args.memory_preset != "none" and "memory" not in names:
            names.append("memory")
        if names:
            self._smol_features["callbacks"] = ",".join(names)
        return [load_callback(name, args) for name in names]

    def _logging_callbacks_first(self) -> None:
        """Callbacks that add values to `logs` (memory) run before the reporters (trackio, wandb) that send them."""
        from .callbacks.memory import MemoryMonitorCallback

        handler = self.callback_handler.callbacks
        for callback in [c for c in handler if isinstance(c, MemoryMonitorCallback)]:
            handler.remove(callback)
            handler.insert(0, callback)

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        from .data import can_tokenize_fast, prepare_conversations, tokenize_conversations

        if isinstance(args, SmolSFTConfig) and formatting_func is None:
            dataset = prepare_conversations(
                dataset, args=args, dataset_name=dataset_name, processing_class=processing_class
            )
            # Batched rendering + tokenization with TRL's ids and masks; TRL then truncates and packs as usual.
            if not getattr(self, "_is_vision_dataset", False) and can_tokenize_fast(dataset, processing_class):
                dataset = tokenize_conversations(
                    dataset, processing_class, args=args, chat_template=self.chat_template, dataset_name=dataset_name
                )
        return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as TRL does, then write the model card, also when the run made no checkpoint (`save_strategy: no`)."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if not _internal_call and (
            output_dir is None or os.path.abspath(output_dir) == os.path.abspath(self.args.output_dir)
        ):
            self.create_model_card()

    def end(self) -> None:
        """Finish the trackers and destroy the process group, as in transformers, after letting a gloo group's
        worker threads go idle: without that, a CPU run of several processes can hang at exit
        (see [`trl_smol.distributed`])."""
        settle_process_group()
        super().end()

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        """Write `README.md` in the output dir: base model, recipe, data, versions, final loss and last samples.

        Called, as in TRL, at every checkpoint save and by `push_to_hub` (see [`trl_smol.model_card`]).
        """
        if not self.is_world_process_zero():
            return
        from .model_card import write_model_card

        write_model_card(self, model_name=model_name, dataset_name=dataset_name, tags=tags)

    def _print_banner(self) -> None:
        if not self.accelerator.is_main_process:
            return
        features = ", ".join(f"{key}={value}" for key, value in self._smol_features.items()) or "no features enabled"
        entry = "trl sft" if os.environ.get(ACTIVE_ENV) else "python"
        print(f"trl-smol {__version__} active ({entry}): {features}", flush=True)


def _check_4bit_backend(quantization_config: Any) -> None:
    """Asking for 4-bit weights where bitsandbytes has no 4-bit backend fails before loading, saying what to do."""
    if not getattr(quantization_config, "load_in_4bit", False):
        return
    from .hardware import bitsandbytes_4bit_error

    error = bitsandbytes_4bit_error()
    if error is not None:
        raise RuntimeError(
            f"The run asks for 4-bit weights (`load_in_4bit: true`), but bitsandbytes cannot quantize to 4-bit on "
            f"this machine ({error}). Remove `load_in_4bit` and set `memory_preset: auto`, which trains LoRA in "
            "16-bit here (`trl-smol doctor` shows its settings), or install a bitsandbytes build with a backend for "
            "this device."
        )


def _is_conversational(dataset: Any) -> bool:
    from trl.data_utils import is_conversational

    if dataset is None:
        return False
    try:
        return is_conversational(next(iter(dataset)))
    except StopIteration:
        return False


def _course_defaults(
    args: SmolSFTConfig, train_dataset: Any, eval_dataset: Any, peft_config, quantization_config, model
):
    """Training on the course's SmolTalk2 mixture (`load_dataset(smoltalk2, "SFT")["train"]`): the course defaults
    for what the user left unset, as `trl sft` applies them (see `trl_smol.course`)."""
    from .course import announce_course_defaults, apply_course_defaults_to_trainer, is_course_mixture

    if not is_course_mixture(train_dataset):
        return train_dataset, eval_dataset
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(quantization_config, "load_in_4bit", False)
    method = "full" if peft_config is None else "qlora" if quantized else "lora"
    train_dataset, eval_dataset, changes = apply_course_defaults_to_trainer(args, train_dataset, eval_dataset, method)
    announce_course_defaults(changes)
    return train_dataset, eval_dataset


def _reject_dataset_dict(train_dataset: Any) -> None:
    if isinstance(train_dataset, (DatasetDict, IterableDatasetDict, dict)):
        splits = ", ".join(train_dataset.keys()) or "none"
        raise TypeError(
            f"`train_dataset` is a {type(train_dataset).__name__} with splits [{splits}], not one split. Pass one "
            f"split, e.g. `dataset['{next(iter(train_dataset), 'train')}']`, or for SmolTalk2's SFT config build the "
            "SmolLM3 mixture with `trl_smol.data.smoltalk2_mixture(...)`."
        )
