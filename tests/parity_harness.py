"""Run one training setup through `trl.SFTTrainer` and through `SmolSFTTrainer` and record what a user would compare.

A [`Case`] names a model, how it is passed, the data, the training arguments and extra trainer arguments. [`run`]
trains it for a few steps with TRL's classes (`plugin=False`) or the plugin's (`plugin=True`, every plugin setting at
its default) and returns an [`Outcome`]: the logged losses, the saved files (by content), the final training
arguments, the tokenizer's template, eos and pad, the precision, or the error the construction raised.

```python
stock, plugin = run(case, plugin=False, root=tmp), run(case, plugin=True, root=tmp)
assert plugin == stock
```
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TrainerCallback, TrainingArguments

from trl_smol.testing import save_tiny_smollm3, tiny_smollm3_tokenizer

# A ChatML template with generation markers, as a non-SmolLM3 model might ship (TRL can train assistant-only with it).
# PLAIN has no markers and is not one TRL knows how to patch: TRL cannot train assistant-only with it.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PLAIN = "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '<|im_end|>' }}{% endfor %}"


def build_models(root: Path) -> dict[str, str]:
    """Tiny checkpoints on disk: SmolLM3 with the SmolLM3 template, with a plain one and with none; Llama with and
    without a chat template."""
    from trl_smol import SMOLLM3_CHAT_TEMPLATE

    models = {
        "smollm3": save_tiny_smollm3(root / "smollm3", chat_template=SMOLLM3_CHAT_TEMPLATE),
        "smollm3-plain-template": save_tiny_smollm3(root / "smollm3-plain", chat_template=PLAIN),
        "smollm3-no-template": save_tiny_smollm3(root / "smollm3-bare"),
    }
    for name, template in (("llama", CHATML), ("llama-no-template", None)):
        tokenizer = tiny_smollm3_tokenizer(template)
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
        LlamaForCausalLM(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        models[name] = str(root / name)
    template_file = root / "template.jinja"
    template_file.write_text(CHATML)
    models["template-file"] = str(template_file)
    return models


def dataset(kind: str, n: int = 8) -> Dataset:
    questions = [(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(n)]
    rows = {
        "lm": [{"text": f"{q} {a}"} for q, a in questions],
        "text_field": [{"content": f"{q} {a}"} for q, a in questions],
        "formatting": [{"question": q, "answer": a} for q, a in questions],
        "prompt_completion": [{"prompt": q, "completion": " " + a} for q, a in questions],
        "conversational": [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in questions
        ],
        "conversational_prompt_completion": [
            {"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}]}
            for q, a in questions
        ],
    }[kind]
    return Dataset.from_list(rows)


def join_question_answer(example: dict) -> str:
    return f"{example['question']} {example['answer']}"


class CountLogs(TrainerCallback):
    """A user's own callback: it must run, once per log, in both trainers."""

    def __init__(self):
        self.logs = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs += 1


@dataclass
class Case:
    name: str
    model: str = "smollm3"
    model_as: str = "path"  # "path", "instance" or "peft" (an already wrapped PeftModel)
    data: str = "conversational"
    args: dict[str, Any] = field(default_factory=dict)
    peft: str | None = None  # "lora", "prompt_tuning", "prefix_tuning", "p_tuning"
    four_bit: bool = False
    eval: str | None = None  # "one" or "dict"
    args_kind: str = "sft"  # "sft", "training_arguments" or "none"
    callbacks: bool = False


@dataclass
class Outcome:
    losses: list[float] | None = None
    eval_losses: dict[str, float] | None = None
    files: dict[str, str] | None = None
    args: dict[str, Any] | None = None
    template: str | None = None
    eos: str | None = None
    pad: str | None = None
    precision: tuple | None = None
    callback_logs: int | None = None
    error: str | None = None
    banner: str | None = None  # the plugin's start-up line


def peft_config(kind: str | None):
    if kind is None:
        return None
    import peft

    if kind == "lora":
        return peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(task_type="CAUSAL_LM", num_virtual_tokens=4)
    if kind == "prompt_tuning":
        return peft.PromptTuningConfig(**common)
    if kind == "prefix_tuning":
        return peft.PrefixTuningConfig(**common)
    return peft.PromptEncoderConfig(**common, encoder_hidden_size=16)


def file_digests(directory: Path) -> dict[str, str]:
    """Content of every saved file, except the model card (the plugin writes its own) and the pickled training
    arguments (a different class by construction; `Outcome.args` compares their values)."""
    skip = {"README.md", "training_args.bin"}
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in skip
    }


def run(case: Case, *, plugin: bool, root: Path, models: dict[str, str]) -> Outcome:
    if plugin:
        from trl_smol import SmolSFTConfig as Config
        from trl_smol import SmolSFTTrainer as Trainer
    else:
        from trl import SFTConfig as Config
        from trl import SFTTrainer as Trainer

    out = root / ("plugin" if plugin else "stock") / case.name
    common = dict(
        max_steps=2, per_device_train_batch_size=2, logging_steps=1, seed=11, report_to="none", save_strategy="no"
    )
    values = {**common, **({"bf16": False} if "use_cpu" not in case.args else {}), **case.args}
    if case.eval:
        values.update(eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=2)
    train = dataset(case.data)
    if case.args_kind == "sft":
        args = Config(output_dir=str(out), **values)
    elif case.args_kind == "training_arguments":
        args = TrainingArguments(output_dir=str(out), **values)
    else:
        args = None
    kwargs: dict[str, Any] = {}
    if case.data == "formatting":
        kwargs["formatting_func"] = join_question_answer
    if case.eval == "one":
        kwargs["eval_dataset"] = train.select(range(4))
    elif case.eval == "dict":
        kwargs["eval_dataset"] = {"first": train.select(range(2)), "last": train.select(range(4, 8))}
    callback = CountLogs() if case.callbacks else None
    if callback is not None:
        kwargs["callbacks"] = [callback]
    if case.four_bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)

    model: Any = models[case.model]
    torch.manual_seed(0)
    if case.model_as in ("instance", "peft"):
        model = AutoModelForCausalLM.from_pretrained(model)
    if case.model_as == "peft":
        import peft

        model = peft.get_peft_model(model, peft_config(case.peft))
    else:
        kwargs["peft_config"] = peft_config(case.peft)

    cwd = os.getcwd()
    os.chdir(root)  # args=None writes `<model>-SFT` into the working directory
    stage = "building the trainer"
    try:
        trainer = Trainer(model=model, args=args, train_dataset=train, **kwargs)
        stage = "training"
        trainer.train()
    except Exception as error:  # noqa: BLE001 - where TRL fails, the plugin must fail alike
        return Outcome(error=f"{stage}: {type(error).__name__}: {error}")
    finally:
        os.chdir(cwd)
    saved = out / "final"
    trainer.save_model(str(saved))
    history = trainer.state.log_history
    tokenizer = trainer.processing_class
    parameter = next(trainer.model.parameters())
    stock_fields = set(TrainingArguments.__dataclass_fields__) | set(_sft_fields())
    return Outcome(
        losses=[entry["loss"] for entry in history if "loss" in entry],
        eval_losses={key: value for entry in history for key, value in entry.items() if key.endswith("_loss")},
        files=file_digests(saved),
        args={
            key: value
            for key, value in trainer.args.to_dict().items()
            if key in stock_fields and key not in ("output_dir", "logging_dir", "run_name")
        },
        template=tokenizer.chat_template,
        eos=tokenizer.eos_token,
        pad=tokenizer.pad_token,
        precision=(trainer.args.bf16, trainer.args.fp16, str(parameter.dtype)),
        callback_logs=callback.logs if callback is not None else None,
        banner=trainer.run_plan.banner() if plugin else None,
    )


def _sft_fields():
    from trl import SFTConfig

    return SFTConfig.__dataclass_fields__
