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

Prompts may carry checks (`{"messages": [...], "checks": ["stops", {"name": "regex", "pattern": "^Answer: "}]}`, or
`checks=[...]` for every prompt): each row then carries its results, the console marks each sample pass/fail, the
trackers get `samples/pass_rate` and `samples/<check>` per pass, and an evaluation gets `eval_samples_pass_rate` and
`eval_samples_<check>` in its metrics, so `metric_for_best_model: eval_samples_pass_rate` selects checkpoints by them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.utils import logging

from ..console import step as console_step
from ..console import write as console_write
from ..launch import new_run_id
from ..preemption import stop_signal
from .budget import SampleBudget, check_share
from .checks import summarize
from .generation import SampleGenerator
from .outputs import SampleOutputs
from .prompts import SamplePromptError, load_prompts

logger = logging.get_logger(__name__)


class SampleGenerationCallback(TrainerCallback):
    r"""
    A [`~transformers.TrainerCallback`] that completes a fixed set of prompts during training and shows the answers on
    the console, in `output_dir/samples.jsonl` and in trackio / wandb tables.

    Args:
        prompts (`str`, `os.PathLike` or `list`):
            Strings (user messages), message lists, dicts with `messages` and `chat_template_kwargs` (to mix think and
            no_think prompts), a path to a `.jsonl`/`.txt` file, or a `datasets.Dataset` with those columns. Checked
            here, before training.
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
        checks (`list`, *optional*):
            Checks for every prompt, after each prompt's own `checks`: names (`"stops"`, `"think"`) or objects
            (`{"name": "regex", "pattern": "^Answer: "}`); see [`trl_smol.samples.checks`].
        budget (`float`, *optional*):
            Largest share of training time (e.g. `0.05`) the passes before the last step may take: they generate the
            leading batches of the prompts that fit, the same ones each pass, and skip a pass when not one batch
            fits; the pass after the last step generates every prompt. `None`: every prompt at every pass. See
            [`trl_smol.samples.budget`].
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
        checks: Sequence[Any] | None = None,
        budget: float | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
    ):
        if every_n_steps < 0 or max_new_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"SampleGenerationCallback needs every_n_steps >= 0, max_new_tokens >= 1 and batch_size >= 1; got "
                f"{every_n_steps}, {max_new_tokens} and {batch_size}."
            )
        self.generator = SampleGenerator(
            load_prompts(prompts, checks=checks),
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
            chat_template_kwargs=dict(chat_template_kwargs or {}),
        )
        self.every_n_steps = every_n_steps
        self.budget_share = budget
        if budget is not None:
            check_share(budget)  # before training
        # Made when training begins, when the number of processes is known; `trainer.evaluate()` alone has none and
        # samples every prompt.
        self.budget: SampleBudget | None = None
        self.at_start = at_start
        self.at_end = at_end
        self.model = model
        self.tokenizer = tokenizer
        # Written in every `samples.jsonl` row so that runs sharing an output dir are told apart. `SmolSFTTrainer`
        # sets its run plan's id; elsewhere one is made when training begins.
        self.run_id: str | None = None
        self.outputs: SampleOutputs | None = None
        self._done_steps: set[int] = set()
        # Each pass's figures by step (`pass_rate`, each check's mean), on every process: evaluations read them.
        self.scores: dict[int, dict[str, float]] = {}

    @property
    def prompts(self):
        return self.generator.prompts

    @property
    def max_new_tokens(self) -> int:
        return self.generator.max_new_tokens

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every row written so far (after a resume, those of the earlier passes too)."""
        return self.outputs.history if self.outputs is not None else []

    @classmethod
    def from_args(cls, args: Any, chat_template_kwargs: dict[str, Any] | None = None) -> SampleGenerationCallback:
        """Build from a `SmolSFTConfig`'s `sample_*` fields (what a recipe sets). `chat_template_kwargs` defaults to
        the config's own; `SmolSFTTrainer` passes the template defaults of its run plan, so samples render like the
        training data."""
        if not getattr(args, "sample_prompts", None):
            raise SamplePromptError(
                "The `samples` callback needs prompts: set `sample_prompts` (a list of prompts or a .jsonl/.txt file)."
            )
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
            chat_template_kwargs=chat_template_kwargs or getattr(args, "chat_template_kwargs", None),
            checks=getattr(args, "sample_checks", None),
            budget=getattr(args, "sample_budget", None),
        ).check_selection(args)

    def check_selection(self, args: Any) -> SampleGenerationCallback:
        """Fail before training when `metric_for_best_model` names a sample metric the prompts' checks do not give."""
        metric = getattr(args, "metric_for_best_model", None) or ""
        name = metric.removeprefix("eval_")
        if not name.startswith("samples_"):
            return self
        keys = self.generator.check_keys
        known = [f"eval_samples_{key}" for key in ["pass_rate", *keys]] if keys else []
        if not keys or name.removeprefix("samples_") not in ["pass_rate", *keys]:
            given = (
                f"the sample checks give {', '.join(known)}"
                if keys
                else "no sample prompt has checks: add `checks` to the prompts or `sample_checks` to the recipe"
            )
            raise SamplePromptError(f"metric_for_best_model={metric} is not a sample metric of this run: {given}.")
        return self

    def generate(
        self, model: torch.nn.Module, tokenizer: Any, step: int = 0, gradient_checkpointing_kwargs=None, count=None
    ):
        """One pass over all prompts, or the first `count` (see [`SampleGenerator.generate`]); every process must call
        it."""
        return self.generator.generate(model, tokenizer, step, gradient_checkpointing_kwargs, count=count)

    # --- TrainerCallback events -----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self.check_selection(args)
        self._open(args, state, **kwargs)
        if self.budget_share is not None:  # training time counts from here (a resumed run: from its first step)
            from accelerate import PartialState

            batch = self.generator.batch_size * PartialState().num_processes
            self.budget = SampleBudget(self.budget_share, len(self.generator.prompts), batch)
            self.budget.begin(state.global_step)
        if self.at_start and state.global_step == 0:
            self._maybe_generate(args, state, **kwargs)

    def _open(self, args, state, **kwargs) -> None:
        model = self.model or kwargs.get("model")
        if model is not None:
            self.generator.max_prompt_tokens(model)  # a token budget larger than the context fails here
        self.run_id = self.run_id or new_run_id()
        self.outputs = SampleOutputs(args.output_dir)
        self._done_steps |= self.outputs.load_written_steps(state)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        periodic = self.every_n_steps > 0 and step % self.every_n_steps == 0
        last = self.at_end and state.max_steps > 0 and step >= state.max_steps
        if periodic or last:
            self._maybe_generate(args, state, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        # Training stopped before max_steps (e.g. early stopping): the final pass has not run yet.
        if self.at_end and state.global_step not in self._done_steps:
            self._maybe_generate(args, state, final=True, **kwargs)

    def _plan(self, state, final: bool, evaluation: bool) -> tuple[int, str]:
        """How many of the prompts this pass generates, and why (empty without a budget)."""
        total = len(self.generator.prompts)
        if self.budget is None:
            return total, ""
        if final:
            return total, f"the final pass, outside sample_budget {self.budget.share:.0%}"
        at = (state.global_step, state.max_steps, self.every_n_steps)
        plan = self.budget.plan(*at, evaluation=evaluation, last_budgeted=not self.at_end)
        return _from_main_process((plan.count, plan.reason))  # wall clocks differ: every rank follows the main one

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """Add this step's pass rates to the evaluation's metrics (`eval_samples_pass_rate`, `eval_samples_<check>`),
        which the Trainer reads after the callbacks to pick the best checkpoint. An evaluation at a step without a
        pass runs one, so the figures are this checkpoint's. Only when the prompts have checks."""
        keys = self.generator.check_keys
        if not keys or metrics is None:
            return
        step = state.global_step
        if self.outputs is None:  # `trainer.evaluate()` without training
            self._open(args, state, **kwargs)
        if step not in self._done_steps:
            self._maybe_generate(args, state, evaluation=True, **kwargs)
        scores = self.scores.get(step)
        if scores is None and step in self._done_steps:  # written before a resume: its rows are in the history
            scores = summarize([row for row in self.outputs.history if row.get("step") == step]) or None
        if scores is None:
            # No pass at this step (it failed, or a stop signal skipped it): NaN is never the best, and the
            # evaluation, and the checkpoint after it, go on.
            if state.is_world_process_zero:
                logger.warning(f"No sample pass at step {step}: eval_samples_* are NaN for this evaluation.")
            scores = {key: math.nan for key in ["pass_rate", *keys]}
        metrics.update({f"eval_samples_{key}": value for key, value in scores.items()})

    def _maybe_generate(self, args, state, final: bool = False, evaluation: bool = False, **kwargs) -> None:
        step = state.global_step
        if step in self._done_steps or stop_signal() is not None:
            return  # after a stop signal the grace period is for the checkpoint (trl_smol.preemption)
        final = final or (self.at_end and state.max_steps > 0 and step >= state.max_steps)
        count, reason = self._plan(state, final, evaluation)
        if count == 0:  # an evaluation at this step may still ask for a pass
            if state.is_world_process_zero:
                console_write(f"Samples at step {step}: skipped, {reason}.")
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
        if state.is_world_process_zero:
            total = len(self.generator.prompts)
            which = f"{count} of {total} prompts" if count < total else f"{total} prompts"
            which += f" ({reason})" if reason else ""
            console_step(
                f"Samples at step {step}: generating answers to {which}, up to {self.generator.max_new_tokens} new "
                "tokens each"
            )
        rows, seconds = self.generate(model, tokenizer, step, args.gradient_checkpointing_kwargs, count=count)
        if self.budget is not None:
            self.budget.spent(seconds, count, budgeted=not final)
        scores = summarize(rows) or None  # rows only on the main process
        if self.generator.check_keys:
            scores = _from_main_process(scores)  # every rank selects the same best checkpoint
        if scores is not None:
            self.scores[step] = scores
        if not state.is_world_process_zero or not rows:
            return
        self.outputs.write([{"run": self.run_id, **row} for row in rows])
        self.outputs.show(rows, step, seconds, scores)
        if final and self.budget is not None:
            console_write(self.budget.summary(seconds) + ".")
        self.outputs.report(args, rows, step, seconds, scores)


def _from_main_process(value: Any) -> Any:
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if PartialState().num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
