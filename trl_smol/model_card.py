"""The model card (`README.md` in the output dir) that [`SmolSFTTrainer`] writes whenever it saves.

TRL's card says which trainer was used. This one also records what is needed to reproduce and judge the run: the base
model (the identifier from the recipe and the local checkpoint it resolved to), the recipe (every setting that differs
from the defaults, after memory presets, plus the adapter settings), the data, the versions of trl-smol, TRL and
transformers, the final training loss, and the first and the last sample pass side by side (with their pass rates
when the sample prompts carry checks).

```python
from trl_smol.model_card import build_model_card

card = build_model_card(trainer)            # a huggingface_hub.ModelCard
card.save("smollm3-sft/README.md")          # what trainer.create_model_card() does on the main process
```

`trainer.push_to_hub()` uploads this card with the model, as in TRL.
"""

from __future__ import annotations

import html
import itertools
import json
import os
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from . import __version__
from .demo import DEMO_MODEL_ID, demo_model_dir
from .samples.outputs import SAMPLES_FILE, read_samples
from .samples.scores import PassScores, pass_scores
from .settings import default_config

# Settings that differ from the defaults in every run, or say nothing about the recipe.
_NOISE_FIELDS = {"output_dir", "logging_dir", "hub_token", "_n_gpu", "local_rank", "distributed_state"}


def model_identifier(name_or_path: str | None) -> str | None:
    """The name a recipe would use for this checkpoint: the plugin's identifier for a model it built, else as given."""
    if not name_or_path:
        return None
    if os.path.isdir(name_or_path) and Path(name_or_path).resolve() == demo_model_dir().resolve():
        return DEMO_MODEL_ID
    return name_or_path


def changed_settings(args: Any) -> dict[str, Any]:
    """Training arguments that differ from a default config of the same class (presets already applied)."""
    # default_config: building a TrainingArguments mid-run would otherwise reset accelerate's state. use_cpu: a default
    # config (use_cpu false) built in a gloo run logs "torch.distributed process group is initialized, but
    # parallel_mode != ParallelMode.DISTRIBUTED"; use_cpu is recorded below instead.
    defaults = default_config(
        type(args), output_dir=args.output_dir, bf16=args.bf16, fp16=args.fp16, use_cpu=args.use_cpu
    ).to_dict()
    current = args.to_dict()
    changed = {key: value for key, value in current.items() if key not in _NOISE_FIELDS and value != defaults.get(key)}
    # bf16/fp16 were copied above so that a default config can be built on any machine; record them when they
    # differ from TRL's own rule (bf16 unless fp16).
    if args.bf16 != (not args.fp16):
        changed.update(bf16=args.bf16, fp16=args.fp16)
    if args.use_cpu:
        changed["use_cpu"] = True
    return dict(sorted(changed.items()))


def adapter_settings(model: Any) -> dict[str, Any] | None:
    """The PEFT adapter's settings (LoRA rank, alpha, targets, ...) when the model is a PEFT model."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        return None
    config = peft_config.get("default") or next(iter(peft_config.values()))
    keep = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "use_dora", "bias")
    values = config.to_dict()
    # Every PEFT type: LoRA has rank, alpha and dropout; prompt, prefix and p-tuning have none of them.
    shown = [key for key in keep if key in values and (values[key] not in (None, [], False) or key == "lora_dropout")]
    settings = {key: values[key] for key in shown}
    if isinstance(settings.get("target_modules"), (set, list, tuple)):
        settings["target_modules"] = sorted(settings["target_modules"])
    if "peft_type" in settings:
        settings["peft_type"] = getattr(settings["peft_type"], "value", str(settings["peft_type"]))
    return settings


def final_loss(log_history: list[dict[str, Any]]) -> tuple[float, int] | None:
    """The training loss at the last logged step and that step, or `None` before the first log."""
    for entry in reversed(log_history):
        if "loss" in entry:
            return float(entry["loss"]), int(entry.get("step", 0))
    return None


def sample_passes(output_dir: str | os.PathLike) -> dict[int, list[dict[str, Any]]]:
    """The rows of `output_dir/samples.jsonl` by step, in step order; `{}` without the file. Read only: a line being
    written or cut short is skipped."""
    path = Path(output_dir) / SAMPLES_FILE
    return read_samples(path).passes if path.exists() else {}


def _sample_prompt(row: dict[str, Any]) -> str:
    prompt = row.get("prompt", row.get("messages", ""))
    if isinstance(prompt, list):  # a conversation: show its last user turn
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        prompt = users[-1] if users else json.dumps(prompt, ensure_ascii=False)
    return str(prompt)


def _sample_completion(row: dict[str, Any]) -> str:
    completion = next((str(row[key]) for key in ("completion", "generation", "text", "output") if key in row), "")
    if row.get("thinking"):  # the samples callback stores the reasoning apart from the answer
        return f"<think>\n{row['thinking'].strip()}\n</think>\n{completion}"
    return completion


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _rate(scores: PassScores) -> str:
    return f"{_percent(scores.pass_rate)} ({scores.passed} of {scores.scored})" if scores.scored else "not scored"


def _verdict(row: dict[str, Any] | None) -> str:
    """`pass`, or `fail` with the checks that failed (a score below 0.5 fails, as in the logs), or `-` unscored."""
    if row is None or row.get("passed") is None:
        return "-"
    if row["passed"]:
        return "pass"
    failed = [
        name if isinstance(value, bool) else f"{name} {value:.2f}"
        for name, value in (row.get("checks") or {}).items()
        if value is False or (not isinstance(value, bool) and isinstance(value, (int, float)) and value < 0.5)
    ]
    return "fail: " + ", ".join(failed) if failed else "fail"


def _cell(text: str, limit: int = 300) -> str:
    """Text for a Markdown table cell: cut at `limit` characters, tags shown as text, one line."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", "<br>") or " "


CARD_SAMPLE_ROWS = 20  # prompts in the card's table: a held-out set of hundreds lives in samples.jsonl


def samples_section(output_dir: str | os.PathLike) -> list[str]:
    """The card's samples: the first and the last pass side by side, per prompt (answer, and pass or fail when the
    prompts carry checks), with each pass's pass rates; one pass alone when there is only one."""
    passes = sample_passes(output_dir)
    if not passes:
        return []
    first, last = min(passes), max(passes)
    steps = [first] if first == last else [first, last]
    scores = {step: pass_scores(passes[step]) for step in steps}
    checked = any(score.scored for score in scores.values())
    if len(steps) == 1:
        lines = ["", f"## Samples (step {first})", ""]
    else:
        lines = ["", f"## Samples: step {first} and step {last} side by side", ""]
    if checked:
        rates = ", ".join(f"{_rate(scores[step])} at step {step}" for step in steps)
        lines += [f"Pass rate: {rates}.", ""]
        if len(steps) == 2 and len(passes[first]) != len(passes[last]):
            shared = min(len(passes[step]) for step in steps)
            # `sample_budget`: the passes before the last step answer the leading prompts, the last one every prompt
            common = " → ".join(_rate(pass_scores(passes[step][:shared])) for step in steps)
            lines += [f"Over the first {shared} prompts, which both passes answered: {common}.", ""]
        names = list(dict.fromkeys(name for step in steps for name in scores[step].checks))
        lines += [
            f"- `{name}`: " + " → ".join(_percent(scores[step].checks.get(name)) for step in steps) for name in names
        ]
        lines.append("")
    else:
        lines += ["The sample prompts carry no `checks`: the answers are shown unscored.", ""]
    header = ["prompt"]
    for step in steps:
        header += [f"step {step}"] + (["result"] if checked else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    pairs = list(itertools.zip_longest(*(passes[step] for step in steps)))
    for pair in pairs[:CARD_SAMPLE_ROWS]:
        prompt = next(_sample_prompt(row) for row in pair if row is not None)
        cells = [_cell(prompt, limit=200)]
        for row in pair:
            cells.append(_cell(_sample_completion(row)) if row is not None else "-")
            if checked:
                cells.append(_verdict(row))
        lines.append("| " + " | ".join(cells) + " |")
    shown = (
        f"The first {CARD_SAMPLE_ROWS} of {len(pairs)} prompts are shown; answers"
        if len(pairs) > CARD_SAMPLE_ROWS
        else "Answers"
    )
    lines += ["", f"{shown} are cut at 300 characters; every pass in full is in `samples.jsonl`."]
    return lines


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    # Display names as in TRL's and PEFT's cards; PEFT appends "- PEFT x" under "### Framework versions" unless the
    # same line is already there.
    versions = {"trl-smol": __version__}
    for package, name in (("trl", "TRL"), ("transformers", "Transformers"), ("peft", "PEFT"), ("torch", "PyTorch")):
        try:
            versions[name] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def _yaml_block(values: dict[str, Any]) -> str:
    text = yaml.safe_dump(json.loads(json.dumps(values, default=str)), sort_keys=False, allow_unicode=True)
    return f"```yaml\n{text}```"


def build_model_card(
    trainer: Any,
    model_name: str | None = None,
    dataset_name: str | None = None,
    tags: str | list[str] | None = None,
) -> ModelCard:
    """A model card for `trainer`'s current state: base model, recipe, data, versions, final loss, samples."""
    args = trainer.args
    model = trainer.model
    base_path = getattr(model.config, "_name_or_path", None) or None
    base_id = model_identifier(base_path)
    adapter = adapter_settings(model)
    plan = getattr(trainer, "run_plan", None)  # a SmolSFTTrainer's; None for a plain trainer
    recipe_path = plan.user.recipe_path if plan is not None else None
    recipe = dict(plan.user.recipe) if plan is not None else {}
    model_name = model_name or Path(args.output_dir).name
    mixture = recipe.get("datasets")
    dataset_name = dataset_name or recipe.get("dataset_name")

    tag_list = [tags] if isinstance(tags, str) else list(tags or [])
    tag_list += [tag for tag in ("trl", "sft", "trl-smol", "smollm3") if tag not in tag_list]
    hub_base = base_id if base_id and not os.path.isdir(base_id) and base_id != DEMO_MODEL_ID else None
    card_data = ModelCardData(
        base_model=hub_base,
        datasets=[dataset_name] if dataset_name else None,
        library_name="peft" if adapter else "transformers",
        model_name=model_name,
        pipeline_tag="text-generation",
        tags=tag_list,
    )

    features = plan.features(getattr(trainer, "distributed_engine", None)) if plan is not None else {}
    lines = [f"# {model_name}", ""]
    lines.append(
        f"Fine-tuned from `{base_id or 'an unnamed model'}` with TRL's `SFTTrainer` and the trl-smol {__version__} "
        f"plugin{', as a LoRA adapter' if adapter else ''}."
    )
    plugin = ", ".join(f"{key}={value}" for key, value in features.items()) or "none enabled"
    lines += ["", f"trl-smol features: {plugin}."]
    if plan is not None:
        lines += ["", f"Run: `{plan.run_id}` (its rows in `samples.jsonl` and its trackio config carry this id)."]
    where = args.hub_model_id or args.output_dir
    lines += ["", "## Quick start", "", "```python"]
    if adapter:
        lines += [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{where}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        ]
    else:
        lines += [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{where}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        ]
    lines += [
        'messages = [{"role": "user", "content": "What is the capital of France?"}]',
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False, "
        'return_tensors="pt", return_dict=True)',
        "output = model.generate(**inputs, max_new_tokens=64)",
        'print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
        "## Base model",
        "",
        f"- Identifier: `{base_id}`",
        f"- Resolved checkpoint: `{base_path}`",
    ]
    if base_id == DEMO_MODEL_ID:
        lines.append(
            "- What it is: SmolLM2-135M-Instruct (Apache-2.0) in the SmolLM3 architecture, built by trl-smol on first "
            "use. The adapter's `base_model_name_or_path` is this local checkpoint, so it loads on this machine."
        )

    lines += ["", "## Recipe", ""]
    if recipe_path:
        lines += [f"Started as `trl sft --config {recipe_path}`.", ""]
    lines += ["Training arguments that differ from the defaults (after memory presets):", ""]
    lines.append(_yaml_block(changed_settings(args)))
    if adapter:
        lines += ["", "Adapter:", "", _yaml_block(adapter)]

    lines += ["", "## Data", ""]
    if mixture:
        lines += ["Dataset mixture (TRL `datasets:`):", "", _yaml_block({"datasets": mixture})]
    elif dataset_name:
        lines.append(f"Dataset: `{dataset_name}`")
    train_dataset = getattr(trainer, "train_dataset", None)
    if train_dataset is not None and hasattr(train_dataset, "__len__"):
        lines += ["", f"Training examples after preparation: {len(train_dataset)}."]

    history = trainer.state.log_history
    lines += ["", "## Results", "", f"- Steps: {trainer.state.global_step}"]
    loss = final_loss(history)
    lines.append(
        f"- Final training loss: {loss[0]:.4f} (step {loss[1]})" if loss else "- Final training loss: not logged"
    )
    mean = next((entry["train_loss"] for entry in reversed(history) if "train_loss" in entry), None)
    if mean is not None:  # only once training has finished (push_to_hub after train)
        lines.append(f"- Mean training loss over the run: {mean:.4f}")

    lines += samples_section(args.output_dir)

    lines += ["", "### Framework versions", ""]
    lines += [f"- {name} {version}" for name, version in _versions().items()]
    lines.append("")
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


def write_model_card(trainer: Any, **kwargs: Any) -> Path:
    """Build the card and save it as `README.md` in the trainer's output dir."""
    path = Path(trainer.args.output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_model_card(trainer, **kwargs).save(path)
    return path
