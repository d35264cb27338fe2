"""GPU accuracy benchmark of the memory estimator: SmolLM3-3B-shaped model, QLoRA / LoRA / full at 2048 and 4096.

Memory does not depend on the weights' values, so the model is SmolLM3-3B's architecture with random weights, built
from its config and saved once to a temporary directory (about 6 GB) so that every case loads it the way TRL does
(by path, bf16, with a 4-bit config for QLoRA). Each case trains a few steps in its own process and records the
measured peak (the allocator's peak reserved memory plus the CUDA context, as `MemoryMonitorCallback` measures it)
against `estimate_memory(..., device="cuda")`. Target: every ratio within 15%.

```bash
pip install -e .            # trl-smol and its dependencies, with a CUDA build of torch
HF_HUB_OFFLINE=1 python tests/benchmarks/gpu_memory.py --output memory_gpu.json          # all cases
python tests/benchmarks/gpu_memory.py --cases qlora:2048 lora:2048 --output quick.json   # a subset
```

Needs one GPU with at least 40 GB for the full fine-tuning cases (an H100/H200 runs everything); nothing is
downloaded. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# (method, max_length, per_device_train_batch_size, optim)
CASES = [
    ("qlora", 2048, 1, "paged_adamw_8bit"),
    ("qlora", 4096, 1, "paged_adamw_8bit"),
    ("lora", 2048, 1, "adamw_torch_fused"),
    ("lora", 4096, 1, "adamw_torch_fused"),
    ("full", 2048, 1, "adamw_torch_fused"),
    ("full", 4096, 1, "adamw_torch_fused"),
]
LORA_R = 16


def case_key(case: tuple) -> str:
    return f"{case[0]}:{case[1]}"


def select_cases(keys: list[str] | None) -> list[tuple]:
    """The cases named `METHOD:MAX_LENGTH`, or all of them."""
    if not keys:
        return list(CASES)
    by_key = {case_key(case): case for case in CASES}
    unknown = [key for key in keys if key not in by_key]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(by_key)}")
    return [by_key[key] for key in keys]


def predicted(case: tuple) -> dict:
    """The estimator's figure for a case: bf16 weights and compute, gradient checkpointing on, LoRA r=16."""
    from trl_smol.memory import estimate_memory
    from trl_smol.memory.shapes import SMOLLM3_3B

    method, max_length, batch_size, optim = case
    estimate = estimate_memory(
        SMOLLM3_3B,
        method=method,
        max_length=max_length,
        per_device_train_batch_size=batch_size,
        gradient_checkpointing=True,
        optim=optim,
        lora_r=LORA_R,
        dtype="bfloat16",
        weights_dtype="bfloat16",
        device="cuda",
    )
    return {"predicted_bytes": estimate.total_bytes, "breakdown": estimate.breakdown}


def summarize(results: list[dict], tolerance: float) -> dict:
    for result in results:
        result["ratio"] = result["measured_bytes"] / result["predicted_bytes"]
    return {
        "tolerance": tolerance,
        "all_within_tolerance": all(abs(result["ratio"] - 1) <= tolerance for result in results),
        "results": results,
    }


def build_random_checkpoint(path: str) -> None:
    """SmolLM3-3B's architecture with random bf16 weights, saved as a checkpoint with a byte-level tokenizer."""
    import torch
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    from trl_smol.testing import tiny_smollm3_tokenizer

    config = SmolLM3Config(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=65536,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=4,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = SmolLM3ForCausalLM(config).to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(path)
    tiny_smollm3_tokenizer().save_pretrained(path)
    del model
    torch.cuda.empty_cache()


def run_case(case: tuple, checkpoint: str, steps: int) -> dict:
    """Train one case in this process; return the measured peak."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_smol import SmolSFTConfig, SmolSFTTrainer
    from trl_smol.memory import MemoryMonitorCallback, lora_config, qlora_quantization_config

    method, max_length, batch_size, optim = case
    generator = torch.Generator().manual_seed(0)
    rows = [
        {"input_ids": torch.randint(10, 128000, (max_length,), generator=generator).tolist()}
        for _ in range(batch_size * steps)
    ]
    # The same LoRA and NF4 settings as the presets choose.
    peft_config = lora_config(LORA_R) if method in ("lora", "qlora") else None
    quantization_config = qlora_quantization_config("bfloat16") if method == "qlora" else None
    monitor = MemoryMonitorCallback()
    with tempfile.TemporaryDirectory() as output_dir:
        args = SmolSFTConfig(
            output_dir=output_dir,
            bf16=True,
            model_init_kwargs={"dtype": "bfloat16"},
            max_length=max_length,
            per_device_train_batch_size=batch_size,
            gradient_checkpointing=True,
            optim=optim,
            max_steps=steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        trainer = SmolSFTTrainer(
            model=checkpoint,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(checkpoint),
            peft_config=peft_config,
            quantization_config=quantization_config,
            callbacks=[monitor],
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {
        "method": method,
        "max_length": max_length,
        "per_device_train_batch_size": batch_size,
        "optim": optim,
        "steps": steps,
        "measured_bytes": int(monitor.measured_peak()),
        "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
        "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()),
        "cuda_context_bytes": int(monitor.context_bytes),
        "train_seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name(),
        **predicted(case),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="memory_gpu.json")
    parser.add_argument("--cases", nargs="*", help="METHOD:MAX_LENGTH, e.g. qlora:2048 (default: all).")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--checkpoint", help="Reuse a checkpoint built by an earlier run.")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    if args.case:
        (case,) = select_cases([args.case])
        print("RESULT " + json.dumps(run_case(case, args.checkpoint, args.steps)), flush=True)
        return 0

    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "gpu_memory.py needs a CUDA GPU; for the CPU benchmark run tests/benchmarks/bench_memory_cpu.py"
        )
    cases = select_cases(args.cases)
    with tempfile.TemporaryDirectory(prefix="smollm3-random-") as scratch:
        checkpoint = args.checkpoint or os.path.join(scratch, "SmolLM3-3B-random")
        if not args.checkpoint:
            print(f"building a random SmolLM3-3B checkpoint in {checkpoint}", flush=True)
            build_random_checkpoint(checkpoint)
        results, failures = [], []
        for case in cases:
            # One process per case: a fresh CUDA context and allocator, so each peak belongs to its case.
            command = [sys.executable, os.path.abspath(__file__), "--case", case_key(case)]
            command += ["--checkpoint", checkpoint, "--steps", str(args.steps)]
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
            if completed.returncode != 0 or not lines:
                failures.append({"case": case_key(case), "returncode": completed.returncode,
                                 "stderr_tail": completed.stderr[-2000:]})  # fmt: skip
                print(f"{case_key(case)}: failed ({completed.returncode})\n{completed.stderr[-2000:]}", flush=True)
                continue
            results.append(json.loads(lines[-1][len("RESULT ") :]))
            measured, estimate = results[-1]["measured_bytes"], results[-1]["predicted_bytes"]
            print(
                f"{case_key(case)}: measured {measured / 2**30:.2f} GiB, predicted {estimate / 2**30:.2f} GiB, "
                f"ratio {measured / estimate:.2f}",
                flush=True,
            )
            with open(args.output, "w") as file:  # partial results survive an interrupted run
                json.dump({**summarize(list(results), args.tolerance), "failures": failures}, file, indent=2)
    summary = {**summarize(results, args.tolerance), "failures": failures}
    with open(args.output, "w") as file:
        json.dump(summary, file, indent=2)
    print(f"wrote {args.output}; all within {args.tolerance:.0%}: {summary['all_within_tolerance']}")
    return 0 if summary["all_within_tolerance"] and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
