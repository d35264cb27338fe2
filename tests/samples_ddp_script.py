"""Two-process CPU run for `test_samples.py`: `torchrun --nproc_per_node 2 samples_ddp_script.py MODEL_DIR OUT_DIR`.

Trains the tiny model for 4 steps with DDP (gloo) and samples three prompts at steps 0, 2 and 4, scored by checks;
evaluates at steps 2 and 4 and keeps the best checkpoint by `eval_samples_pass_rate`, which every rank must agree on.
"""

import sys

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from trl_smol.distributed import settle_process_group
from trl_smol.samples import SampleGenerationCallback


def main(model_dir: str, output_dir: str) -> None:
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = [tokenizer(f"What is {i}+{i}? It is {2 * i}.")["input_ids"][:8] for i in range(16)]
    ids = [row + [tokenizer.pad_token_id] * (8 - len(row)) for row in ids]
    samples = SampleGenerationCallback(
        ["What is 7 plus 5?", "Name a primary colour.", "Hi"],
        every_n_steps=2,
        max_new_tokens=4,
        batch_size=1,  # more generate calls than processes: each must be on the same footing
        chat_template_kwargs={"enable_thinking": False},
        checks=["stops", {"name": "regex", "pattern": "^"}],
    )
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=4,
        per_device_train_batch_size=2,
        report_to="none",
        use_cpu=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_samples_pass_rate",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids}),
        eval_dataset=Dataset.from_dict({"input_ids": ids[:2], "labels": ids[:2]}),
        processing_class=tokenizer,
        callbacks=[samples],
    )
    trainer.train()
    state = trainer.state
    print(f"rank {args.process_index}: best {state.best_model_checkpoint} at {state.best_metric}", flush=True)
    if trainer.is_world_process_zero():
        print(f"world_size={trainer.args.world_size}")
    settle_process_group()  # a plain Trainer's end() does not: without it a gloo run can hang at exit
    trainer.end()


if __name__ == "__main__":
    main(*sys.argv[1:3])
