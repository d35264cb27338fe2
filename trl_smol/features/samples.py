"""Sample generation during training (`sample_prompts`, `sample_*`): see docs/samples.md.

```yaml
sample_prompts: [What is 2+2?, Name a colour.]   # or a .jsonl / .txt file
sample_every_n_steps: 50
sample_checks: [stops]                           # scored on every prompt, with each prompt's own `checks`
sample_budget: 0.05                              # passes before the last step: at most 5% of training time
```

The callback itself ([`trl_smol.samples.SampleGenerationCallback`]) works in any `transformers.Trainer`; this module
decides whether the run has it and builds it with the run's template defaults and run id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..samples import SampleGenerationCallback
from .base import Decision, Feature, RunContext, Source
from .values import number, whole_number


@dataclass
class SampleArguments:
    """
    sample_prompts (`list`, *optional*):
        Prompts to generate from during training: strings, message lists, dicts with `messages` and
        `chat_template_kwargs`, or a path to a `.jsonl`/`.txt` file. `None` turns sample generation off. Answers go to
        the console, `output_dir/samples.jsonl` and the trackio/wandb tables (see [`SampleGenerationCallback`]).
    sample_every_n_steps (`int`, *optional*, defaults to `100`):
        Generate every this many optimizer steps; `0`: only at start and end.
    sample_at_start (`bool`, *optional*, defaults to `True`):
        Generate once before the first step, as a baseline (not when resuming from a checkpoint).
    sample_at_end (`bool`, *optional*, defaults to `True`):
        Generate once after the last step.
    sample_max_new_tokens (`int`, *optional*, defaults to `96`):
        Token budget of each sample; with `sample_every_n_steps` it sets the cost of sampling.
    sample_do_sample (`bool`, *optional*, defaults to `False`):
        Sample instead of greedy decoding.
    sample_temperature (`float`, *optional*, defaults to `0.7`):
        Temperature when `sample_do_sample` is on.
    sample_top_p (`float`, *optional*, defaults to `0.95`):
        Nucleus mass when `sample_do_sample` is on.
    sample_seed (`int`, *optional*, defaults to `0`):
        Seed of sampled generations: each pass reseeds with `sample_seed + step`, so the same step gives the same
        text, and the training random state is not touched.
    sample_checks (`list`, *optional*):
        Checks scored on every sample prompt, after the prompt's own `checks`: names (`stops`, `think`) or objects
        (`{name: regex, pattern: "^Answer: "}`). Pass rates go to the trackers as `samples/pass_rate` and
        `samples/<check>`, and into evaluations as `eval_samples_pass_rate`, usable as `metric_for_best_model`.
    sample_budget (`float`, *optional*):
        Largest share of training time (e.g. `0.05`) the sample passes before the last step may take. Each then
        generates the leading batches of `sample_prompts` (`per_device_eval_batch_size` per process) that fit, the
        same prompts every pass, and is skipped when not one batch fits; the pass after the last step generates every
        prompt. For a held-out set of hundreds of prompts. `None`: every prompt at every pass.
    """

    # Typed list[str] so the command line accepts `--sample_prompts a b` or a file; YAML and Python may give dicts.
    sample_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Prompts to generate from during training (strings, message lists, dicts with messages and "
            "chat_template_kwargs) or a path to a .jsonl/.txt file. Unset: no sample generation."
        },
    )
    sample_every_n_steps: int = field(
        default=100, metadata={"help": "Generate samples every this many optimizer steps (0: only at start/end)."}
    )
    sample_at_start: bool = field(default=True, metadata={"help": "Generate a baseline before the first step."})
    sample_at_end: bool = field(default=True, metadata={"help": "Generate after the last step."})
    sample_max_new_tokens: int = field(default=96, metadata={"help": "Maximum new tokens per sample."})
    sample_do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    sample_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    sample_top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    sample_seed: int = field(default=0, metadata={"help": "Seed for sampled generations (reproducible per step)."})
    # Typed list[str] like sample_prompts: the command line takes names, YAML and Python may give objects.
    sample_checks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Checks scored on every sample prompt (names such as stops, think, or objects such as "
            "{name: regex, pattern: ...}); pass rates are logged as samples/pass_rate and eval_samples_pass_rate."
        },
    )
    sample_budget: float | None = field(
        default=None,
        metadata={
            "help": "Largest share of training time (e.g. 0.05) the sample passes before the last step may take: "
            "each generates the leading batches of the prompts that fit, and the final pass every prompt. Unset: "
            "every prompt at every pass."
        },
    )


class Samples(Feature):
    name = "samples"
    rules = {
        "sample_every_n_steps": whole_number(0, note=" (0: only before the first and after the last step)"),
        "sample_max_new_tokens": whole_number(1),
        "sample_temperature": number(above=0),
        "sample_top_p": number(above=0, at_most=1),
        "sample_seed": whole_number(0),
        "sample_budget": number(above=0, below=1, null="null (every prompt at every pass)"),
    }

    def check_arguments(self, args: Any) -> None:
        super().check_arguments(args)
        if args.sample_budget is not None and not args.sample_prompts:
            raise ValueError("sample_budget bounds the sample passes: set `sample_prompts` too, or remove it.")
        if args.sample_checks and not args.sample_prompts:
            raise ValueError("sample_checks are scored on sample prompts: set `sample_prompts` too, or remove them.")
        if hasattr(args.sample_prompts, "column_names"):  # the arguments are written as JSON (trackers, card)
            raise ValueError(
                "sample_prompts cannot be a datasets.Dataset: write it to a file (`dataset.to_json('prompts.jsonl')`) "
                "and give the path, or pass the dataset to `SampleGenerationCallback` in `callbacks=`."
            )

    def decide(self, context: RunContext) -> Decision:
        if context.value("sample_prompts"):
            return Decision(self.name, Source.USER, True, "sample_prompts")
        if "samples" in (context.value("callbacks") or ()):
            return Decision(self.name, Source.USER, True, "callbacks")
        return Decision(self.name, Source.DEFAULT, False)

    def describe(self, decision: Decision) -> str | None:
        return None  # listed under `callbacks`

    def callbacks(self, decision: Decision, plan: Any, args: Any, prepared: Any = None) -> list:
        if not decision.on:
            return []
        callback = SampleGenerationCallback.from_args(args, chat_template_kwargs=plan.template_defaults(args))
        callback.run_id = plan.run_id
        return [callback]
