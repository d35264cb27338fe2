"""CPU accuracy benchmark of the memory estimator: predicted vs measured peak RSS added by training.

Trains the demo model (`trl-smol/SmolLM3-demo-135M`, float32 on CPU) for a few steps with LoRA and with full
fine-tuning at two sequence lengths, each run in its own process, and compares the measured peak resident memory
added by training (peak RSS during `train()` minus the RSS before the trainer was built, so the weights count) with
`estimate_memory(..., device="cpu")`. Target: every ratio within 25%.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_memory_cpu.py --output memory_cpu.json
```

Not collected by pytest (no `test_` prefix). Takes a few minutes on two cores; other load on the machine makes the
measurement noisy, so compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from trl_smol.memory.measure import current_rss, peak_rss, reset_peak_rss  # the callback measures the same way

DEFAULT_CASES = [("lora", 256), ("lora", 512), ("full", 256), ("full", 512)]


def run_case(method: str, max_length: int, batch_size: int, steps: int) -> dict:
    """Train one configuration in this process and return predicted and measured bytes."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer

    from trl_smol import SmolSFTConfig, SmolSFTTrainer
    from trl_smol.memory import estimate_memory
    from trl_smol.models import DEMO_MODEL_ID, resolve_model_name

    torch.manual_seed(0)
    path = resolve_model_name(DEMO_MODEL_ID)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # Full-length rows, already tokenized: every micro-batch has exactly batch_size x max_length tokens.
    rows = [{"input_ids": torch.randint(100, 40000, (max_length,)).tolist()} for _ in range(batch_size * steps)]
    dataset = Dataset.from_list(rows)
    peft_config = None
    if method == "lora":
        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as output_dir:
        args = SmolSFTConfig(
            output_dir=output_dir,
            bf16=False,
            max_length=max_length,
            per_device_train_batch_size=batch_size,
            max_steps=steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            gradient_checkpointing=True,
            optim="adamw_torch_fused",
            disable_tqdm=True,
        )
        baseline = current_rss()
        trainer = SmolSFTTrainer(
            model=path, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
        exact = reset_peak_rss()
        trainer.train()
        measured = peak_rss() - baseline
    estimate = estimate_memory(
        path,
        method=method,
        max_length=max_length,
        per_device_train_batch_size=batch_size,
        gradient_checkpointing=True,
        optim="adamw_torch_fused",
        lora_r=16,
        dtype="float32",
        device="cpu",
    )
    return {
        "method": method,
        "max_length": max_length,
        "per_device_train_batch_size": batch_size,
        "steps": steps,
        "predicted_bytes": estimate.total_bytes,
        "measured_bytes": measured,
        "ratio": measured / estimate.total_bytes,
        "peak_reset_exact": exact,
        "breakdown": estimate.breakdown,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="memory_cpu.json", help="Where to write the JSON results.")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="Optimizer steps; the peak is in the second.")
    parser.add_argument("--tolerance", type=float, default=0.25, help="Allowed |ratio - 1|.")
    parser.add_argument("--case", help="Internal: run one METHOD:MAX_LENGTH case and print its JSON.")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    if args.case:
        method, max_length = args.case.split(":")
        print("RESULT " + json.dumps(run_case(method, int(max_length), args.batch_size, args.steps)), flush=True)
        return 0

    from rich.console import Console
    from rich.table import Table

    results = []
    for method, max_length in DEFAULT_CASES:
        # One process per case: a fresh allocator and a peak that belongs to this case only.
        command = [sys.executable, __file__, "--case", f"{method}:{max_length}"]
        command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
        completed = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
        if completed.returncode != 0 or not lines:
            print(completed.stdout[-3000:], completed.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"case {method}:{max_length} failed with exit code {completed.returncode}")
        results.append(json.loads(lines[-1][len("RESULT ") :]))
        latest = results[-1]
        print(f"{method} {max_length}: measured/predicted {latest['ratio']:.2f}", flush=True)

    table = Table(title="Peak RSS added by training: estimate vs measurement (demo model, CPU, float32)")
    for column in ("method", "max_length", "batch", "predicted MiB", "measured MiB", "measured/predicted"):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(
            result["method"],
            str(result["max_length"]),
            str(result["per_device_train_batch_size"]),
            f"{result['predicted_bytes'] / 2**20:.0f}",
            f"{result['measured_bytes'] / 2**20:.0f}",
            f"{result['ratio']:.2f}",
        )
    Console().print(table)
    within = all(abs(result["ratio"] - 1) <= args.tolerance for result in results)
    with open(args.output, "w") as file:
        json.dump({"tolerance": args.tolerance, "all_within_tolerance": within, "results": results}, file, indent=2)
    print(f"wrote {args.output}; all within {args.tolerance:.0%}: {within}")
    return 0 if within else 1


if __name__ == "__main__":
    raise SystemExit(main())
