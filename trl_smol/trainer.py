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

import torch
from datasets import DatasetDict, IterableDatasetDict
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainingArguments
from transformers.utils import logging
from trl.trainer.sft_trainer import SFTTrainer

from .callbacks import run_first
from .config import SmolSFTConfig
from .console import RunConsole
from .data import can_tokenize_fast, prepare_conversations, tokenize_conversations
from .data.padding_free import BoundedRowsCollator
from .distributed import describe_engine, settle_process_group
from .launch import check_requested_engine, entered_through_trl_sft
from .memory import MemoryMonitorCallback, handle_out_of_memory
from .memory.hardware import bitsandbytes_4bit_error
from .models import resolve_model_name
from .outcome import run_outputs
from .plan import RunPlan, apply_run_plan, feature_named, plan_run
from .run_safety import InterruptCheckpoint
from .settings import UserSettings, default_config, explicit_settings
from .trackers import replace_trackio_callback

logger = logging.get_logger(__name__)


def _to_smol_config(args: TrainingArguments | None, model: Any) -> SmolSFTConfig:
    """Accept what `SFTTrainer` accepts for `args` and return a `SmolSFTConfig` recording what the user set."""
    if isinstance(args, SmolSFTConfig):
        return args
    if args is None:
        name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
        return SmolSFTConfig(f"{os.path.basename(str(name).rstrip('/'))}-SFT")
    values = {k: v for k, v in args.to_dict().items() if k in SmolSFTConfig.__dataclass_fields__}
    # to_dict masks every `*_token` field (hub_token, eos_token, pad_token): take their real values.
    values.update({key: getattr(args, key) for key in values if key.endswith("_token")})
    # A plain TrainingArguments has no SFT fields: TRL's SFT defaults apply to them, as in SFTTrainer.
    explicit = explicit_settings(args)  # compared with a default config of the caller's own class
    config = default_config(SmolSFTConfig, **values)
    config.user_settings = UserSettings(explicit=explicit)
    return config


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
        check_requested_engine()  # FSDP asked for on a CPU-only machine stops here, before anything loads
        if isinstance(model, str):
            init_kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
            model = resolve_model_name(model, revision=init_kwargs.get("revision"))
        model_name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", None)
        _check_4bit_backend(quantization_config)

        # The tokenizer is loaded here, as TRL would, so that the plan can decide the chat template before TRL's
        # eos/pad handling sees it.
        if processing_class is None and model_name is not None:
            processing_class = AutoTokenizer.from_pretrained(model_name, trust_remote_code=args.trust_remote_code)
        templated = isinstance(processing_class, PreTrainedTokenizerBase) and _is_conversational(train_dataset)
        # 1. Decide: one context, every feature's decision (trl_smol/plan.py, trl_smol/features/).
        self.run_plan: RunPlan = plan_run(
            args,
            model=None if isinstance(model, str) else model,
            model_name=model_name,
            peft_config=peft_config,
            quantization_config=quantization_config,
            tokenizer=processing_class if templated else None,
            conversational=templated,
            custom_collator=data_collator is not None,
            vision=_has_images(train_dataset),
            # `compute_loss_func` is SFTTrainer's first argument after `processing_class`
            custom_loss=kwargs.get("compute_loss_func", positional[0] if positional else None) is not None,
        )
        # The plugin's console (trl_smol.console) where it is active: `trl sft`, or a banner that lists a feature.
        active = entered_through_trl_sft() or bool(self.run_plan.features())
        self.run_console = RunConsole(active, user_settings=self.run_plan.explicit)
        if args.process_index == 0:
            for warning in self.run_plan.warnings:
                logger.warning(f"trl-smol: {warning}")
            if self.run_plan.preset is not None:
                from rich.console import Console

                Console().print(self.run_plan.preset_table())
        # 2. Prepare: the preset's changes and each feature's, before TRL sees the arguments and the tokenizer.
        self.installed: dict[str, Any] = apply_run_plan(self.run_plan, args, processing_class if templated else None)
        self._retry_batch_size: int | None = None  # set after an out-of-memory error under `memory_preset: auto`

        self.run_console.step(f"Loading the model {model_name or type(model).__name__} ({self.run_plan.method})")
        with self.run_console.quiet():  # model loading and data preparation
            super().__init__(
                model,
                args,
                data_collator,
                train_dataset,
                eval_dataset,
                processing_class,
                *positional,
                callbacks=self._plugin_callbacks(args) + list(callbacks or []),  # see order_callbacks
                peft_config=self.run_plan.peft_config,
                quantization_config=self.run_plan.quantization_config,
                **kwargs,
            )
        self.order_callbacks()
        # 3. Install: what each feature puts into the trainer TRL built (collator, loss positions, ...).
        for decision in self.run_plan.decisions:
            installed = feature_named(decision.feature).install(decision, self)
            if installed is not None:
                self.installed[decision.feature] = installed
        self.distributed_engine: str | None = describe_engine(self.accelerator.state)  # known once accelerate is up
        if self.accelerator.is_main_process:
            print(self.run_plan.banner(self.distributed_engine), flush=True)

    # --- callbacks -----------------------------------------------------------------------------------------------
    def _plugin_callbacks(self, args: SmolSFTConfig) -> list:
        """The callbacks the features of the run plan add, in the plan's order."""
        built = []
        for decision in self.run_plan.decisions:
            feature = feature_named(decision.feature)
            built += feature.callbacks(decision, self.run_plan, args, self.installed.get(decision.feature))
        return built

    def order_callbacks(self) -> None:
        """The one place where the order of callbacks is set.

        - [`InterruptCheckpoint`] runs first: every rank has agreed on a stop signal before another callback's
          `on_step_end` asks `trl_smol.preemption.stop_signal()` (the sample pass skips itself after one, on every
          rank alike, so no rank waits in a collective for another).
        - Callbacks that add values to a log event's `logs` ([`MemoryMonitorCallback`]) run next, so that the
          reporters (trackio, wandb, ...) that run after them send those values.
        - The plugin's callbacks come after transformers' reporters (trackio's run exists before the first sample
          pass) and before the user's (`callbacks=`): [`SampleGenerationCallback`]'s `on_evaluate` adds the sample
          pass rates (`eval_samples_pass_rate`, ...) to the metrics that `EarlyStoppingCallback` then reads.
        - transformers' trackio reporter is replaced by [`trl_smol.trackers.TrackioUserRunCallback`], which logs into
          a trackio run the user started (`trackio.init(...)` before the trainer) instead of starting and finishing
          its own; without such a run it behaves as the stock one.
        """
        run_first(self.callback_handler, InterruptCheckpoint, MemoryMonitorCallback)
        replace_trackio_callback(self.callback_handler, run_id=self.run_plan.run_id)

    # --- training ------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """Train as TRL does, with the output dir guarded (see [`trl_smol.run_safety`]): `resume_from_checkpoint=True`
        resumes from the newest *complete* checkpoint, naming any incomplete one it skips, and a run stopped by SIGTERM
        or SIGINT (`save_on_interrupt`) saves a checkpoint, then exits non-zero with one line saying how to resume."""
        guard = self.installed["run_safety"]
        resume_from_checkpoint = guard.before_train(self.args, resume_from_checkpoint)
        with self.run_console.quiet():
            result = super().train(resume_from_checkpoint, *args, **kwargs)
        guard.after_train(self.args)
        return result

    def training_step(self, *args, **kwargs):
        # Out of memory under a preset: explain it (peak, estimate, smaller preset), or under `memory_preset: auto`
        # with `auto_find_batch_size` retry at half the batch and twice the accumulation (trl_smol.memory.oom).
        try:
            return super().training_step(*args, **kwargs)
        except Exception as error:
            batch_size = getattr(self, "_train_batch_size", self.args.per_device_train_batch_size)
            retry = handle_out_of_memory(self.args, self.run_plan.preset, error, batch_size)
            if retry is not None:
                self._retry_batch_size = retry
            raise

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # TRL's loss, with its fused LM head handed only the labelled positions under `smol_score_labelled_only`
        # (trl_smol/features/labelled_scoring.py). Asked for the outputs, TRL recomputes the full logits: left as is.
        scoring = self.installed.get("labelled_scoring")
        if scoring is None or return_outputs or "labels" not in inputs:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        else:
            with scoring.only_labelled(inputs) as scored_inputs:
                result = super().compute_loss(model, scored_inputs, return_outputs, num_items_in_batch)
        if model.training and isinstance(self.data_collator, BoundedRowsCollator):
            self._count_bounded_rows(inputs)
        return result

    def _count_bounded_rows(self, inputs: dict[str, Any]) -> None:
        """TRL counts a padding-free batch as one row (`position_ids.size(1)` tokens); a batch of bounded rows holds
        several, and padding runs: count its real tokens, as TRL counts a padded batch's (a listed touch point)."""
        counted = self.accelerator.gather_for_metrics(torch.tensor(inputs["position_ids"].size(1))).sum().item()
        real = (inputs["input_ids"] != self.processing_class.pad_token_id).sum()
        real = self.accelerator.gather_for_metrics(real).sum().item()
        self._total_train_tokens += (real - counted) // self._tp_size
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

    def _update_auto_batch_size(self, batch_size):
        # transformers' batch-size finder retries at 90%; after an OOM under `memory_preset: auto` we retry at half.
        super()._update_auto_batch_size(self._retry_batch_size or batch_size)

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        if isinstance(args, SmolSFTConfig) and formatting_func is None:
            rows = f" ({len(dataset)} rows)" if hasattr(dataset, "__len__") else ""
            self.run_console.step(f"Preparing the {dataset_name} dataset{rows}")
            dataset = prepare_conversations(
                dataset,
                args=args,
                dataset_name=dataset_name,
                processing_class=processing_class,
                template_defaults=self.run_plan.template_defaults(args),
            )
            # Batched rendering + tokenization with TRL's ids and masks; TRL then truncates and packs as usual.
            if not getattr(self, "_is_vision_dataset", False) and can_tokenize_fast(dataset, processing_class):
                dataset = tokenize_conversations(
                    dataset,
                    processing_class,
                    args=args,
                    chat_template=self.chat_template,
                    dataset_name=dataset_name,
                    packing=packing,
                )
        return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as TRL does, then write the model card, also when the run made no checkpoint (`save_strategy: no`)."""
        with self.run_console.quiet():
            super().save_model(output_dir, _internal_call=_internal_call)
            if not _internal_call and (
                output_dir is None or os.path.abspath(output_dir) == os.path.abspath(self.args.output_dir)
            ):
                self.create_model_card()

    def end(self) -> None:
        """Finish the trackers and destroy the process group, as in transformers, after letting a gloo group's
        worker threads go idle: without that, a CPU run of several processes can hang at exit
        (see [`trl_smol.distributed`]). Where the plugin is active, the last lines say where the model, `samples.jsonl`
        and the model card are, and the Python that loads the model ([`trl_smol.outcome.run_outputs`])."""
        settle_process_group()
        super().end()
        self.installed["run_safety"].release()
        outputs = run_outputs(self.args.output_dir) if self.args.process_index == 0 else None
        if outputs is not None and self.run_console.active:  # where the files are, and how to load them: last
            print(outputs, flush=True)

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        """Write `README.md` in the output dir: base model, recipe, data, versions, final loss and last samples.

        Called, as in TRL, at every checkpoint save and by `push_to_hub` (see [`trl_smol.model_card`]). A card that
        cannot be written is a warning: it never stops training or loses a checkpoint.
        """
        if not self.is_world_process_zero():
            return
        from .model_card import write_model_card

        try:
            write_model_card(self, model_name=model_name, dataset_name=dataset_name, tags=tags)
        except Exception as error:  # noqa: BLE001 - the card is a courtesy; the weights are what must be saved
            logger.warning(
                f"trl-smol could not write the model card README.md in {self.args.output_dir} "
                f"({type(error).__name__}: {error}); the model and checkpoints are saved."
            )


def _check_4bit_backend(quantization_config: Any) -> None:
    """Asking for 4-bit weights where bitsandbytes has no 4-bit backend fails before loading, saying what to do."""
    if not getattr(quantization_config, "load_in_4bit", False):
        return
    error = bitsandbytes_4bit_error()
    if error is not None:
        raise RuntimeError(
            f"The run asks for 4-bit weights (`load_in_4bit: true`), but bitsandbytes cannot quantize to 4-bit on "
            f"this machine ({error}). Remove `load_in_4bit` and set `memory_preset: auto`, which trains LoRA in "
            "16-bit here (`trl-smol doctor` shows its settings), or install a bitsandbytes build with a backend for "
            "this device."
        )


def _has_images(dataset: Any) -> bool:
    columns = set(getattr(dataset, "column_names", None) or [])
    return bool(columns & {"image", "images"})


def _is_conversational(dataset: Any) -> bool:
    from trl.data_utils import is_conversational

    if dataset is None:
        return False
    try:
        return is_conversational(next(iter(dataset)))
    except StopIteration:
        return False


def _reject_dataset_dict(train_dataset: Any) -> None:
    if isinstance(train_dataset, (DatasetDict, IterableDatasetDict, dict)):
        splits = ", ".join(train_dataset.keys()) or "none"
        raise TypeError(
            f"`train_dataset` is a {type(train_dataset).__name__} with splits [{splits}], not one split. Pass one "
            f"split, e.g. `dataset['{next(iter(train_dataset), 'train')}']`, or for SmolTalk2's SFT config build the "
            "SmolLM3 mixture with `train_dataset=trl_smol.smoltalk2_train(dataset)`."
        )
