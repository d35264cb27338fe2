"""Two-process CPU run for `test_samples.py`: `torchrun --nproc_per_node 2 samples_ddp_script.py MODEL_DIR OUT_DIR`.

Trains the tiny model for 4 steps with DDP (gloo) and samples three prompts at steps 0, 2 and 4, scored by checks;
evaluates at steps 2 and 4 and keeps the best checkpoint by `eval_samples_pass_rate`, which every rank must agree on.

With a third argument `budget` (`test_samples_budget.py`): ten prompts under `sample_budget: 0.1`, on a scripted clock
(a step takes 10 s, a generate call 1 s on each rank), so the plan is known: one batch (a prompt per rank) at step 0,
3 batches at step 2, every prompt at step 4.
"""

import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

from trl_smol.distributed import settle_process_group
from trl_smol.samples import SampleGenerationCallback


class Clock(TrainerCallback):
    """A scripted `time.perf_counter` for the budget and the generator: a step takes 10 s, a generate call 1 s."""

    def __init__(self, model):
        import trl_smol.samples.budget
        import trl_smol.samples.generation

        self.now = 0.0
        trl_smol.samples.budget.time = trl_smol.samples.generation.time = self
        generate = model.generate

        def one_second_generate(*args, **kwargs):
            self.now += 1.0
            return generate(*args, **kwargs)

        model.generate = one_second_generate

    def perf_counter(self) -> float:
        return self.now

    def on_step_end(self, args, state, control, **kwargs):
        self.now += 10.0


def main(model_dir: str, output_dir: str, mode: str = "") -> None:
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = [tokenizer(f"What is {i}+{i}? It is {2 * i}.")["input_ids"][:8] for i in range(16)]
    ids = [row + [tokenizer.pad_token_id] * (8 - len(row)) for row in ids]
    budget = mode == "budget"
    samples = SampleGenerationCallback(
        [f"Question {i}?" for i in range(10)] if budget else ["What is 7 plus 5?", "Name a primary colour.", "Hi"],
        every_n_steps=2,
        max_new_tokens=4,
        batch_size=1,  # more generate calls than processes: each must be on the same footing
        chat_template_kwargs={"enable_thinking": False},
        checks=["stops", {"name": "regex", "pattern": "^"}],
        budget=0.1 if budget else None,
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
        callbacks=[Clock(model), samples] if budget else [samples],
    )
    trainer.train()
    state = trainer.state
    # One file per rank beside the output dir: two processes printing to one pipe can interleave their lines.
    choice = Path(output_dir).parent / f"best-rank{args.process_index}.txt"
    choice.write_text(f"{state.best_model_checkpoint} at {state.best_metric}")
    if trainer.is_world_process_zero():
        print(f"world_size={trainer.args.world_size}")
    settle_process_group()  # a plain Trainer's end() does not: without it a gloo run can hang at exit
    trainer.end()


if __name__ == "__main__":
    main(*sys.argv[1:4])
