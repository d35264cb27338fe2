"""`SampleGenerationCallback`: generate from chosen prompts during training, to see what the model says.

Works with `SmolSFTTrainer`, stock `trl.SFTTrainer` and a plain `transformers.Trainer`; it only uses the
`TrainerCallback` API (model and tokenizer come from the callback arguments, or from the constructor).

```python
from trl_smol import SampleGenerationCallback

samples = SampleGenerationCallback(
    [
        "What is 7 plus 5?",                                                   # a user message
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Name a colour."}],
        {"messages": [{"role": "user", "content": "Why is the sky blue?"}],    # per-prompt template kwargs
         "chat_template_kwargs": {"enable_thinking": True}},
    ],                                                                         # or "prompts.jsonl" / "prompts.txt"
    every_n_steps=100,
    max_new_tokens=96,
)
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, callbacks=[samples])
```

With `SmolSFTConfig`, setting `sample_prompts` is enough: `SmolSFTTrainer` adds the callback, built by `from_args`.

Every generation pass writes one line per prompt to `output_dir/samples.jsonl` (append-only, flushed after each pass),
prints a table on the console, and logs a table with the history of all passes to trackio / wandb when they are in
`report_to`, together with `samples/seconds`, the wall time of the pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from transformers import GenerationConfig, TrainerCallback
from transformers.utils import logging

logger = logging.get_logger(__name__)

SAMPLES_FILE = "samples.jsonl"
STOP_TOKEN = "<|im_end|>"
PROMPT_FILE_SUFFIXES = (".jsonl", ".txt")
TABLE_COLUMNS = ["step", "prompt", "completion", "thinking", "enable_thinking", "num_new_tokens", "stopped"]

_THINK_BLOCK = re.compile(r"\s*<think>(?P<thinking>.*?)(?:</think>(?P<answer>.*)|$)", re.DOTALL)


class SamplePromptError(ValueError):
    """A prompt list or prompt file that cannot be used; raised before training starts."""


@dataclass
class SamplePrompt:
    """One conversation to complete, with its chat-template kwargs and where it came from (for error messages)."""

    messages: list[dict[str, Any]]
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def text(self) -> str:
        """The last user message: what the console and the tables show as the prompt."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return str(message["content"])
        return str(self.messages[-1]["content"])


def load_prompts(prompts: str | os.PathLike | Sequence[Any]) -> list[SamplePrompt]:
    """Normalise `prompts` (see [`SampleGenerationCallback`]) into [`SamplePrompt`]s, or raise `SamplePromptError`.

    A string that ends in `.jsonl` or `.txt` and has no whitespace is a path. In a `.txt` file each non-empty line is
    one user message; in a `.jsonl` file each line is a JSON string, message list, or object with `messages` (or
    `prompt`) and optional `chat_template_kwargs`.
    """
    if isinstance(prompts, (str, os.PathLike)):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or not prompts:
        raise SamplePromptError(
            "sample_prompts is empty: give at least one prompt, or a .jsonl/.txt file with one prompt per line."
        )
    loaded: list[SamplePrompt] = []
    for position, item in enumerate(prompts):
        if _is_prompt_path(item):
            loaded.extend(_read_prompt_file(Path(item)))
        else:
            loaded.append(_to_prompt(item, f"sample_prompts[{position}]"))
    return loaded


def _is_prompt_path(item: Any) -> bool:
    if isinstance(item, os.PathLike):
        return True
    return isinstance(item, str) and item.endswith(PROMPT_FILE_SUFFIXES) and not any(c.isspace() for c in item)


def _read_prompt_file(path: Path) -> list[SamplePrompt]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SamplePromptError(f"Cannot read the sample prompt file {path}: {error}.") from error
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        if path.suffix == ".txt":
            prompts.append(_to_prompt(line.strip(), source))
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise SamplePromptError(f"{source}: not valid JSON ({error.msg}, column {error.colno}).") from error
        prompts.append(_to_prompt(item, source))
    if not prompts:
        raise SamplePromptError(f"The sample prompt file {path} has no prompts: write one prompt per line.")
    return prompts


def _to_prompt(item: Any, source: str) -> SamplePrompt:
    kwargs: Any = {}
    if isinstance(item, dict):
        unknown = set(item) - {"messages", "prompt", "chat_template_kwargs"}
        if unknown or ("messages" in item) == ("prompt" in item):
            raise SamplePromptError(
                f"{source}: a prompt object needs exactly one of `messages` or `prompt`, plus optional "
                f"`chat_template_kwargs`; got keys {sorted(item)}."
            )
        kwargs = item.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise SamplePromptError(
                f"{source}: `chat_template_kwargs` must be an object, got {type(kwargs).__name__}."
            )
        item = item.get("messages", item.get("prompt"))
    if isinstance(item, str):
        if not item.strip():
            raise SamplePromptError(f"{source}: the prompt is an empty string.")
        return SamplePrompt([{"role": "user", "content": item}], dict(kwargs), source)
    if isinstance(item, list) and item:
        for turn, message in enumerate(item):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str) and "content" in message):
                raise SamplePromptError(
                    f"{source}: message {turn} must be an object with `role` and `content`, got {message!r}."
                )
        return SamplePrompt([dict(message) for message in item], dict(kwargs), source)
    raise SamplePromptError(
        f"{source}: a prompt must be a string, a non-empty list of messages, or an object with `messages`; got "
        f"{item!r}."
    )


def split_thinking(text: str) -> tuple[str, str | None]:
    """Split a completion into `(answer, thinking)`. `thinking` is `None` without a `<think>` block; an unclosed block
    (the token limit hit while thinking) is all thinking and no answer."""
    match = _THINK_BLOCK.match(text)
    if match is None:
        if "</think>" in text:  # the template opened the block in the prompt
            thinking, answer = text.split("</think>", 1)
            return answer.strip(), thinking.strip()
        return text.strip(), None
    return (match.group("answer") or "").strip(), match.group("thinking").strip()


class _AcceleratorView:
    """What TRL's `unwrap_model_for_generation` reads from an `Accelerator`, from accelerate's shared state: callbacks
    do not receive the trainer's accelerator."""

    def __init__(self):
        from accelerate.state import AcceleratorState, is_initialized

        # Outside a trainer (a direct `generate` call) no accelerator exists: then nothing is sharded.
        self.state = AcceleratorState() if is_initialized() else SimpleNamespace(deepspeed_plugin=None)

    @staticmethod
    def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
        from accelerate.utils import extract_model_from_parallel

        return extract_model_from_parallel(model)


class SampleGenerationCallback(TrainerCallback):
    r"""
    A [`~transformers.TrainerCallback`] that completes a fixed set of prompts during training and shows the answers on
    the console, in `output_dir/samples.jsonl` and in trackio / wandb tables.

    Args:
        prompts (`str`, `os.PathLike` or `list`):
            Strings (user messages), message lists, dicts with `messages` and `chat_template_kwargs` (to mix think and
            no_think prompts), or a path to a `.jsonl`/`.txt` file. Checked here, before training.
        every_n_steps (`int`, *optional*, defaults to `100`):
            Generate every this many optimizer steps; `0` only at start and end.
        at_start (`bool`, *optional*, defaults to `True`):
            Generate before the first step (a baseline). Skipped when resuming from a checkpoint.
        at_end (`bool`, *optional*, defaults to `True`):
            Generate after the last step.
        max_new_tokens (`int`, *optional*, defaults to `96`):
            Token budget of each sample.
        do_sample (`bool`, *optional*, defaults to `False`):
            Sample instead of greedy decoding.
        temperature (`float`, *optional*, defaults to `0.7`) and top_p (`float`, *optional*, defaults to `0.95`):
            Sampling settings, used when `do_sample=True`.
        seed (`int`, *optional*, defaults to `0`):
            Seed of sampled generations: each pass is seeded with `seed + step`, so a rerun gives the same text; the
            training random state is left untouched.
        batch_size (`int`, *optional*, defaults to `8`):
            Prompts per `generate` call (per process).
        chat_template_kwargs (`dict`, *optional*):
            Defaults for the chat template's kwargs, under each prompt's own.
        model ([`~transformers.PreTrainedModel`], *optional*) and tokenizer (*optional*):
            Used instead of the ones the trainer passes to callbacks.

    Generation uses the tokenizer's chat template, or the SmolLM3 template when it has none, stops at `<|im_end|>` (or
    the tokenizer's eos) and splits a `<think>...</think>` block into the `thinking` field.
    """

    def __init__(
        self,
        prompts: str | os.PathLike | Sequence[Any],
        *,
        every_n_steps: int = 100,
        at_start: bool = True,
        at_end: bool = True,
        max_new_tokens: int = 96,
        do_sample: bool = False,
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int = 0,
        batch_size: int = 8,
        chat_template_kwargs: dict[str, Any] | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
    ):
        if every_n_steps < 0 or max_new_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"SampleGenerationCallback needs every_n_steps >= 0, max_new_tokens >= 1 and batch_size >= 1; got "
                f"{every_n_steps}, {max_new_tokens} and {batch_size}."
            )
        self.prompts = load_prompts(prompts)
        self.every_n_steps = every_n_steps
        self.at_start = at_start
        self.at_end = at_end
        self.max_new_tokens = max_new_tokens
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.batch_size = batch_size
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.model = model
        self.tokenizer = tokenizer
        self.samples_path: Path | None = None
        self.history: list[dict[str, Any]] = []  # every row written, for the tracker tables
        self._done_steps: set[int] = set()
        self._truncation_warned: set[int] = set()
        self._console = None

    @classmethod
    def from_args(cls, args: Any) -> SampleGenerationCallback:
        """Build from a `SmolSFTConfig`'s `sample_*` fields (what a recipe sets)."""
        if not getattr(args, "sample_prompts", None):
            raise SamplePromptError(
                "The `samples` callback needs prompts: set `sample_prompts` (a list of prompts or a .jsonl/.txt file)."
            )
        template_kwargs = args.template_kwargs_for(None) if hasattr(args, "template_kwargs_for") else None
        return cls(
            args.sample_prompts,
            every_n_steps=args.sample_every_n_steps,
            at_start=args.sample_at_start,
            at_end=args.sample_at_end,
            max_new_tokens=args.sample_max_new_tokens,
            do_sample=args.sample_do_sample,
            temperature=args.sample_temperature,
            top_p=args.sample_top_p,
            seed=args.sample_seed,
            batch_size=args.per_device_eval_batch_size,
            chat_template_kwargs=template_kwargs,
        )

    # --- TrainerCallback events -----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        model = self.model or kwargs.get("model")
        if model is not None:
            self._max_prompt_tokens(model)  # a token budget larger than the context fails here, not mid-training
        self.samples_path = Path(args.output_dir) / SAMPLES_FILE
        self._load_written_steps(state)
        if self.at_start and state.global_step == 0:
            self._maybe_generate(args, state, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        periodic = self.every_n_steps > 0 and step % self.every_n_steps == 0
        last = self.at_end and state.max_steps > 0 and step >= state.max_steps
        if periodic or last:
            self._maybe_generate(args, state, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        # Training stopped before max_steps (e.g. early stopping): the final pass has not run yet.
        if self.at_end and state.global_step not in self._done_steps:
            self._maybe_generate(args, state, **kwargs)

    # --- generation -------------------------------------------------------------------------------------------------
    def _maybe_generate(self, args, state, **kwargs) -> None:
        step = state.global_step
        if step in self._done_steps:
            return
        self._done_steps.add(step)
        model = self.model or kwargs.get("model")
        tokenizer = self.tokenizer or kwargs.get("processing_class")
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a multimodal processor wraps its tokenizer
        if model is None or tokenizer is None:
            raise ValueError(
                "SampleGenerationCallback needs a model and a tokenizer: the trainer passes them to callbacks, or "
                "give `model=` and `tokenizer=` to the callback."
            )
        rows, seconds = self.generate(model, tokenizer, step, args.gradient_checkpointing_kwargs)
        if not state.is_world_process_zero or not rows:
            return
        self._write(rows)
        self._print(rows, step, seconds)
        self._report(args, rows, step, seconds)

    def generate(
        self, model: torch.nn.Module, tokenizer: Any, step: int = 0, gradient_checkpointing_kwargs: dict | None = None
    ) -> tuple[list[dict[str, Any]], float]:
        """Run one generation pass over all prompts; return the rows (on the main process, `[]` elsewhere) and the
        pass's wall time. Every process must call it: prompts are split between processes and the rows gathered.

        A generation error (e.g. out of memory) is logged with the step and gives no rows; training goes on.
        """
        from accelerate import PartialState
        from accelerate.utils import gather_object

        process = PartialState()
        start = time.perf_counter()
        indexed = list(enumerate(self.prompts))
        # Padding keeps every process in the same number of generate calls, which sharded models (FSDP/ZeRO-3) need.
        with process.split_between_processes(indexed, apply_padding=True) as local:
            rows: list[dict[str, Any]] = []
            failure: Exception | None = None
            # A failed sample must not end a healthy training run. The error is caught inside the context too, since
            # TRL's unwrap only re-enables gradient checkpointing when its block ends normally.
            try:
                with self._generation_mode(model, gradient_checkpointing_kwargs) as unwrapped:
                    try:
                        rows = self._generate_local(unwrapped, tokenizer, local, step, process.num_processes > 1)
                    except Exception as exc:  # noqa: BLE001
                        failure = exc
            except Exception as exc:  # noqa: BLE001
                failure = exc
            error = None if failure is None else f"{type(failure).__name__}: {failure}"
            if isinstance(failure, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()
        if process.num_processes > 1:
            rows = gather_object(rows)
            errors = [e for e in gather_object([error]) if e]
        else:
            errors = [error] if error else []
        seconds = time.perf_counter() - start
        if errors:
            logger.error(f"Sample generation at step {step} failed, training continues: {'; '.join(errors)}")
            return [], seconds
        if not process.is_main_process:
            return [], seconds
        unique = {row.pop("prompt_index"): row for row in rows}  # drop the repeats added by padding
        return [unique[index] for index in sorted(unique)], seconds

    @contextlib.contextmanager
    def _generation_mode(self, model: torch.nn.Module, gradient_checkpointing_kwargs: dict | None) -> Iterator:
        """Eval mode and no grad for generation; training mode, gradient checkpointing and `config.use_cache` after."""
        from trl.distributed import DistributedBackend
        from trl.models.utils import unwrap_model_for_generation

        accelerator = _AcceleratorView()
        backend = DistributedBackend(accelerator)
        # Callbacks get the bare module, not the DeepSpeed engine TRL needs to gather ZeRO-3 parameters up front; then
        # the module's own hooks fetch them layer by layer, and `synced_gpus` keeps the processes in step.
        gather_zero3 = type(model).__name__ == "DeepSpeedEngine"
        with warnings.catch_warnings():
            # TRL's unwrap still reads the deprecated `is_gradient_checkpointing`; not the user's concern.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            with (
                unwrap_model_for_generation(
                    model,
                    accelerator,
                    gather_deepspeed3_params=gather_zero3,
                    gradient_checkpointing_kwargs=gradient_checkpointing_kwargs,
                ) as unwrapped,
                backend.summon_full_params(model, recurse=False),
            ):
                modes = [(module, module.training) for module in unwrapped.modules()]
                config = getattr(unwrapped, "config", None)
                use_cache = getattr(config, "use_cache", None)
                unwrapped.eval()
                try:
                    with torch.no_grad():
                        yield unwrapped
                finally:
                    for module, training in modes:
                        module.training = training
                    if use_cache is not None:
                        config.use_cache = use_cache

    def _generate_local(
        self, model: torch.nn.Module, tokenizer: Any, items: list[tuple[int, SamplePrompt]], step: int, multi: bool
    ) -> list[dict[str, Any]]:
        from trl.distributed import DistributedBackend

        backend = DistributedBackend(_AcceleratorView())
        synced = multi and (backend.is_zero3 or backend.is_fsdp)
        stop_ids = _stop_token_ids(tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        settings = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, use_cache=True)
        if self.do_sample:
            settings.update(temperature=self.temperature, top_p=self.top_p)
        generation_config = GenerationConfig(**settings, eos_token_id=stop_ids, pad_token_id=pad_id)
        max_prompt = self._max_prompt_tokens(model)
        device = next(model.parameters()).device
        rows = []
        # Sampling reseeds per pass without touching the training random state (dropout, data order).
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(self.seed + step)
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                encoded = [self._encode(tokenizer, index, prompt, max_prompt) for index, prompt in batch]
                input_ids, attention_mask = _left_pad(encoded, pad_id, device)
                began = time.perf_counter()
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=generation_config,
                    synced_gpus=synced,
                )
                seconds = time.perf_counter() - began
                for (index, prompt), new_ids in zip(batch, output[:, input_ids.shape[1] :].tolist(), strict=True):
                    rows.append(self._row(tokenizer, index, prompt, new_ids, stop_ids, step, seconds))
        return rows

    def _encode(self, tokenizer: Any, index: int, prompt: SamplePrompt, max_prompt: int | None) -> list[int]:
        kwargs = {**self.chat_template_kwargs, **prompt.chat_template_kwargs}
        text = tokenizer.apply_chat_template(
            prompt.messages,
            tokenize=False,
            add_generation_prompt=True,
            chat_template=_template_for(tokenizer),
            **kwargs,
        )
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # we warn about length below
        if max_prompt is not None and len(ids) > max_prompt:
            if index not in self._truncation_warned:
                self._truncation_warned.add(index)
                warnings.warn(
                    f"Sample prompt {prompt.source} has {len(ids)} tokens, more than the {max_prompt} the context "
                    f"leaves after max_new_tokens={self.max_new_tokens}; its start is cut off.",
                    stacklevel=2,
                )
            ids = ids[-max_prompt:]
        return ids

    def _row(self, tokenizer, index, prompt, new_ids, stop_ids, step, seconds) -> dict[str, Any]:
        stop_at = next((i for i, token in enumerate(new_ids) if token in stop_ids), None)
        kept = new_ids if stop_at is None else new_ids[:stop_at]
        completion, thinking = split_thinking(tokenizer.decode(kept, skip_special_tokens=False))
        kwargs = {**self.chat_template_kwargs, **prompt.chat_template_kwargs}
        system = " ".join(str(m["content"]) for m in prompt.messages if m["role"] == "system")
        return {
            "prompt_index": index,
            "step": step,
            "prompt": prompt.text,
            "completion": completion,
            "thinking": thinking,
            "enable_thinking": bool(kwargs.get("enable_thinking", True)) and "/no_think" not in system,
            "num_new_tokens": len(new_ids) if stop_at is None else stop_at + 1,
            "stopped": stop_at is not None,
            "seconds": round(seconds, 3),
        }

    def _max_prompt_tokens(self, model: torch.nn.Module) -> int | None:
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if context is None:
            return None
        if context <= self.max_new_tokens:
            raise ValueError(
                f"sample max_new_tokens={self.max_new_tokens} leaves no room for a prompt in the model's "
                f"{context}-token context; lower it."
            )
        return context - self.max_new_tokens

    # --- outputs ----------------------------------------------------------------------------------------------------
    def _load_written_steps(self, state) -> None:
        """Steps already in `samples.jsonl` when resuming, shared by all processes so they skip the same passes."""
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list

        loaded: list[Any] = [set(), []]
        if state.is_world_process_zero and self.samples_path.exists():
            if state.global_step == 0:
                # A fresh run in an old output_dir: keep the old samples, but not in this run's file.
                moved = self.samples_path.with_suffix(f".{int(time.time())}.jsonl")
                self.samples_path.rename(moved)
                logger.warning(
                    f"{self.samples_path} is from an earlier run that this one does not resume: moved to {moved}."
                )
            else:
                loaded = _read_samples(self.samples_path)
        if PartialState().num_processes > 1:
            broadcast_object_list(loaded, from_process=0)
        self._done_steps |= loaded[0]
        self.history = loaded[1]

    def _write(self, rows: list[dict[str, Any]]) -> None:
        self.samples_path.parent.mkdir(parents=True, exist_ok=True)
        with self.samples_path.open("a", encoding="utf-8") as file:
            for row in rows:
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.history.extend(rows)

    def _print(self, rows: list[dict[str, Any]], step: int, seconds: float) -> None:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        if self._console is None:
            self._console = Console()
            if not self._console.is_terminal and "COLUMNS" not in os.environ:
                self._console.width = 160  # a log file has no width; rich would assume 80 columns
        table = Table(title=f"Samples at step {step} ({seconds:.1f}s)", box=box.SIMPLE_HEAD, title_justify="left")
        table.add_column("step", justify="right")
        table.add_column("prompt", max_width=40, overflow="fold")
        table.add_column("answer", overflow="fold")
        table.add_column("think", justify="right")
        table.add_column("tokens", justify="right")
        table.add_column("end")
        for row in rows:
            answer = row["completion"] if len(row["completion"]) <= 300 else row["completion"][:300] + "…"
            thinking = "-" if row["thinking"] is None else f"{len(row['thinking'])} ch"
            end = "stop" if row["stopped"] else "limit"
            table.add_row(str(step), row["prompt"], answer, thinking, str(row["num_new_tokens"]), end)
        self._console.print(table)

    def _report(self, args, rows: list[dict[str, Any]], step: int, seconds: float) -> None:
        """Tables with every pass so far, and `samples/seconds`, to the trackers in `report_to` with a run open."""
        report_to = args.report_to if isinstance(args.report_to, list) else [args.report_to]
        data = [[row[column] for column in TABLE_COLUMNS] for row in self.history]
        metrics_for = {"samples/seconds": round(seconds, 3), "train/global_step": step}
        for name in ("trackio", "wandb"):
            if name not in report_to and "all" not in report_to:
                continue
            try:
                if name == "trackio":
                    import trackio

                    if trackio.context_vars.current_run.get() is not None:
                        trackio.log({"samples": trackio.Table(columns=TABLE_COLUMNS, data=data), **metrics_for})
                else:
                    import wandb

                    if wandb.run is not None:
                        wandb.log({"samples": wandb.Table(columns=TABLE_COLUMNS, data=data), **metrics_for})
            except Exception as error:  # noqa: BLE001 - a tracker hiccup must not end training
                logger.warning(f"Could not log samples of step {step} to {name}: {error}")


def _template_for(tokenizer: Any) -> str | None:
    """`None` (use the tokenizer's own template) or the SmolLM3 template for a tokenizer without one."""
    if getattr(tokenizer, "chat_template", None):
        return None
    from ..chat_template import SMOLLM3_CHAT_TEMPLATE

    return SMOLLM3_CHAT_TEMPLATE


def _stop_token_ids(tokenizer: Any) -> list[int]:
    ids = []
    vocab = tokenizer.get_vocab()
    if STOP_TOKEN in vocab:
        ids.append(vocab[STOP_TOKEN])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError(f"The tokenizer has neither {STOP_TOKEN} nor an eos token: generation would never stop.")
    return ids


def _left_pad(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompts into a batch. Done here rather than by the tokenizer so that its `padding_side`, which the
    trainer relies on, is never touched."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _read_samples(path: Path) -> list[Any]:
    """`[steps, rows]` from an existing samples file; a line cut short by a crash is skipped (and ended, so that the
    next row starts on its own line)."""
    steps, rows = set(), []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        with path.open("a", encoding="utf-8") as file:
            file.write("\n")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
            steps.add(int(row["step"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning(f"{path}:{number} is not a sample row (cut short by a crash?); skipped.")
            continue
        rows.append(row)
    return [steps, rows]


__all__ = ["SampleGenerationCallback", "SamplePrompt", "SamplePromptError", "load_prompts", "split_thinking"]
