"""One generation pass over the sample prompts, on every process, with the model in eval mode and restored after.

```python
from trl_smol.samples import SampleGenerator, load_prompts

generator = SampleGenerator(load_prompts(["What is 7 plus 5?"]), max_new_tokens=32)
rows, seconds = generator.generate(model, tokenizer, step=0)   # rows on the main process, [] on the others
```

Generation uses the tokenizer's chat template, or the SmolLM3 template when it has none, stops at `<|im_end|>` (or
the tokenizer's eos) and splits a `<think>...</think>` block into the `thinking` field. It never sees packed training
batches: prompts are encoded one by one and left-padded with an attention mask.
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.utils import logging

from .checks import score
from .lora import lora_fast_path
from .prefill import cache_argument, prefilled_cache
from .prompts import SamplePrompt

logger = logging.get_logger(__name__)

STOP_TOKEN = "<|im_end|>"

_THINK_BLOCK = re.compile(r"\s*<think>(?P<thinking>.*?)(?:</think>(?P<answer>.*)|$)", re.DOTALL)


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


@dataclass
class SampleGenerator:
    """Generation settings and prompts; [`generate`] runs one pass. See [`SampleGenerationCallback`] for the fields.

    Two settings, on by default, make a pass cheaper for the same text; off, they give the plain path to compare with:
    `fast_lora` skips LoRA adapters that add zero and merges the others into copies of float32 weights for the pass
    ([`lora_fast_path`]); `reuse_prefixes` prefills prompts without padding and a shared prefix once
    ([`prefilled_cache`]).
    """

    prompts: list[SamplePrompt]
    max_new_tokens: int = 96
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    fast_lora: bool = True
    reuse_prefixes: bool = True
    _truncation_warned: set[int] = field(default_factory=set, init=False, repr=False)
    _prefill_failed: bool = field(default=False, init=False, repr=False)

    @property
    def check_keys(self) -> list[str]:
        """The result keys of the prompts' checks, in order of first appearance; empty when no prompt has checks."""
        return list(dict.fromkeys(key for prompt in self.prompts for key in prompt.checks))

    def generate(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        step: int = 0,
        gradient_checkpointing_kwargs: dict | None = None,
        count: int | None = None,
    ) -> tuple[list[dict[str, Any]], float]:
        """Run one generation pass over all prompts, or the first `count`; return the rows (on the main process, `[]`
        elsewhere) and the pass's wall time. Every process must call it: prompts are split between processes and the
        rows gathered.

        Each row carries its check results (`checks`, `passed`: see [`trl_smol.samples.checks.score`]), scored on
        the process that generated it. A generation error (e.g. out of memory) is logged with the step and gives no
        rows; training goes on.
        """
        from accelerate import PartialState
        from accelerate.utils import gather_object

        process = PartialState()
        start = time.perf_counter()
        indexed = list(enumerate(self.prompts))[:count]
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
        # the module's own hooks fetch them layer by layer, and `synced_gpus` keeps the processes in step. FSDP2
        # (`fully_shard`) works the same way: its forward hooks gather each layer (`summon_full_params` is FSDP1's).
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
                # Parameters sharded by ZeRO-3 or FSDP can be neither read whole nor swapped: adapters as they are.
                fast_lora = self.fast_lora and not _sharded(unwrapped, backend)
                try:
                    with torch.no_grad(), lora_fast_path(unwrapped) if fast_lora else contextlib.nullcontext():
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
        synced = multi and _sharded(model, backend)
        stop_ids = _stop_token_ids(tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        settings = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, use_cache=True)
        if self.do_sample:
            settings.update(temperature=self.temperature, top_p=self.top_p)
        generation_config = GenerationConfig(**settings, eos_token_id=stop_ids, pad_token_id=pad_id)
        max_prompt = self.max_prompt_tokens(model)
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
                generate = dict(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=generation_config,
                    synced_gpus=synced,
                )
                # Prefill forwards differ in number between processes: not where `synced_gpus` keeps them in step.
                output = self._generate_prefilled(model, encoded, generate) if not synced else None
                if output is None:
                    output = model.generate(**generate)
                seconds = time.perf_counter() - began
                for (index, prompt), new_ids in zip(batch, output[:, input_ids.shape[1] :].tolist(), strict=True):
                    rows.append(self._row(tokenizer, index, prompt, new_ids, stop_ids, step, seconds))
        return rows

    def _generate_prefilled(self, model: torch.nn.Module, encoded: list[list[int]], generate: dict) -> Any:
        """`generate` continuing from [`prefilled_cache`]; `None` when that does not apply. If it fails (a model or a
        transformers version it does not know), it says so once and the run goes on without it."""
        if not self.reuse_prefixes or self._prefill_failed:
            return None
        try:
            cache = prefilled_cache(model, encoded)
            return None if cache is None else model.generate(**generate, **{cache_argument(): cache})
        except torch.OutOfMemoryError:
            raise  # not this path's fault: the plain one would need more memory still
        except Exception as error:  # noqa: BLE001 - the plain path below still gives the samples
            self._prefill_failed = True
            logger.warning(f"Prefilling sample prompts failed, generating without it from now on: {error!r}")
            return None

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
        # The reasoning mode as SmolLM3's template picks it: a flag in the system prompt wins over the kwarg.
        enable_thinking = kwargs.get("enable_thinking")
        thinks = "/no_think" not in system and ("/think" in system or enable_thinking is None or bool(enable_thinking))
        row = {
            "prompt_index": index,
            "step": step,
            "prompt": prompt.text,
            "completion": completion,
            "thinking": thinking,
            "enable_thinking": thinks,
            "num_new_tokens": len(new_ids) if stop_at is None else stop_at + 1,
            "stopped": stop_at is not None,
            "seconds": round(seconds, 3),
        }
        row["checks"], row["passed"] = score(prompt.checks, prompt.row, row, prompt.source)
        return row

    def max_prompt_tokens(self, model: torch.nn.Module) -> int | None:
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if context is None:
            return None
        if context <= self.max_new_tokens:
            raise ValueError(
                f"sample max_new_tokens={self.max_new_tokens} leaves no room for a prompt in the model's "
                f"{context}-token context; lower it."
            )
        return context - self.max_new_tokens


def _sharded(model: torch.nn.Module, backend: Any) -> bool:
    """Whether the parameters are sharded across processes, so that every forward gathers them collectively: ZeRO-3
    or FSDP as accelerate's state says, or torch's FSDP2 `fully_shard` seen on the model itself. A model sharded
    without accelerate's FSDP (torchrun and `fully_shard`, the only way on a CPU) leaves that state silent, and
    unsynchronised generate calls would then leave a rank waiting in a gather."""
    if backend.is_zero3 or backend.is_fsdp:
        return True
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: no FSDP2
        return False
    return any(isinstance(module, FSDPModule) for module in model.modules())


def _template_for(tokenizer: Any) -> str | None:
    """`None` (use the tokenizer's own template) or the SmolLM3 template for a tokenizer without one."""
    if getattr(tokenizer, "chat_template", None):
        return None
    from ..templating import SMOLLM3_CHAT_TEMPLATE

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
