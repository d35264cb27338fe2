"""What bf16 autocast costs on a CPU without native bf16: one training step of the demo model, bf16 vs float32.

TRL trains with `bf16: true` unless told otherwise; with `use_cpu: true` transformers accepts it and accelerate then
runs each forward under `torch.autocast("cpu", dtype=torch.bfloat16)`, which a CPU without AVX512-BF16 / AMX / Arm
BF16 emulates. This times `training_step` on the same padded batch of demo rows (LoRA r=16 on all linear layers,
float32 weights, one thread as `trl sft` trains on a CPU), once in each precision, and prints the ratio that the
plugin's warning quotes (`trl_smol.plan.SLOW_BF16`). Not part of `run_all.py`: the bf16 step alone takes minutes.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_bf16_cpu.py --rows 4
```
"""

from __future__ import annotations

import argparse
import contextlib
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4, help="Rows in the batch (the demo recipe's micro-batch is 4).")
    args = parser.parse_args(argv)

    import torch
    from benchlib import DEMO_RECIPE, REPO_ROOT, demo_model_path, load_recipe
    from datasets import load_dataset
    from peft import LoraConfig

    from trl_smol import SmolSFTConfig, SmolSFTTrainer
    from trl_smol.memory.hardware import cpu_has_native_bf16

    torch.set_num_threads(1)
    recipe = load_recipe(DEMO_RECIPE)
    data = load_dataset("json", data_files=str(REPO_ROOT / recipe["datasets"][0]["data_files"]), split="train")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainers = {}
    for bf16 in (False, True):
        config = SmolSFTConfig(
            output_dir="bench-bf16-cpu", report_to="none", bf16=bf16, use_cpu=True, max_length=512, seed=42,
            assistant_only_loss=True, smol_chat_template="smollm3", per_device_train_batch_size=args.rows,
        )  # fmt: skip
        trainer = SmolSFTTrainer(
            model=demo_model_path(), args=config, train_dataset=data.select(range(4 * args.rows)), peft_config=lora
        )
        trainer.create_optimizer_and_scheduler(num_training_steps=1)
        trainer.current_gradient_accumulation_steps = 1
        trainer.model.train()
        trainers[bf16] = trainer
    batch = next(iter(trainers[False].get_train_dataloader()))
    seconds = {}
    for bf16, trainer in trainers.items():
        # the autocast accelerate wraps the model's forward in once `train()` prepares it
        context = trainer.accelerator.autocast() if bf16 else contextlib.nullcontext()
        started = time.perf_counter()
        with context:
            trainer.training_step(trainer.model, dict(batch))
        seconds[bf16] = time.perf_counter() - started
    shape, tokens = tuple(batch["input_ids"].shape), int(batch["attention_mask"].sum())
    print(f"batch {shape}, {tokens} tokens; native bf16 on this CPU: {cpu_has_native_bf16()}")
    print(
        f"float32 {seconds[False]:.1f} s, bf16 autocast {seconds[True]:.1f} s: {seconds[True] / seconds[False]:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
