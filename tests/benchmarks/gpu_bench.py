"""GPU benchmark: SmolLM3-3B-shaped model, QLoRA / LoRA / full fine-tuning, stock TRL vs the plugin, on two row shapes.

For each case the same run is made twice, each in its own process: with stock `trl.SFTTrainer` (TRL's defaults for
batch size, optimizer and checkpointing) and with `SmolSFTTrainer` and `memory_preset: auto`. Both load the model in
bf16 from a checkpoint with SmolLM3-3B's architecture and random weights (built from its config, nothing is
downloaded). A case is `METHOD:ARM[:ROWS[:LENGTH]]`:

- ROWS `full` (default): every row fills `max_length`, so no token is padding;
- ROWS `chat`: chat-like lengths, log-normal with median 512 tokens and sigma 0.8, cut to 64..`max_length` (an
  assumed shape with a long tail, not SmolTalk2's measured one): where padding costs stock TRL and padding-free
  batches pay;
- LENGTH: `max_length` (default 2048).

Recorded per run: training tokens per second over the optimizer steps after the warm-up (real tokens: TRL's
`num_tokens`, which counts a padded batch's attention mask), model FLOPs utilisation (6 * N * tokens/s over the chip's
peak dense bf16 FLOP/s; N = all parameters, recomputation and attention not counted), measured peak memory (allocator
peak reserved plus CUDA context) against the plugin's estimate for that run, and what the preset chose. One JSON file
is written. Targets (issue 23): auto >= 1.0x stock in every case, >= 1.3x on chat rows.

```bash
python tests/benchmarks/gpu_bench.py --out gpu_bench.json              # installs trl-smol (pip install -e .) if needed
python tests/benchmarks/gpu_bench.py --wheels /path/to/wheels           # offline: install from a wheel folder
python tests/benchmarks/gpu_bench.py --cases lora:stock:chat lora:plugin:chat lora:plugin:full:8192   # a subset
```

Runs on one H100/H200-class GPU in under 8 minutes: `--budget-s` is a deadline for the whole run (a case is not
started with less than `MIN_CASE_S` left and is stopped at the deadline; skipped cases are listed in the report).
The CUDA build of torch already installed is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
METHODS = ("qlora", "lora", "full")
ARMS = ("stock", "plugin")
ROWS = ("full", "chat")
MAX_LENGTH = 2048
LORA_R = 16
SMOLLM3_3B_PARAMETERS = 3_075_098_624
MIN_CASE_S = 60.0  # a case needs about this long: process start, loading (and quantising) 3B weights, a few steps

# Peak dense (no sparsity) bf16 tensor FLOP/s from the vendors' data sheets. Matched on the lower-cased device
# name, first match wins, so specific names come before general ones.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("gh200", 989.4e12),
    ("h200", 989.4e12),
    ("h100 pcie", 756.0e12),
    ("h100 nvl", 835.0e12),
    ("h100", 989.4e12),  # SXM / HBM3
    ("h800", 989.4e12),
    ("b200", 2250.0e12),
    ("a100", 312.0e12),
    ("a800", 312.0e12),
    ("l40s", 362.05e12),
    ("l4", 121.0e12),
    ("a10g", 70.0e12),
]


# --- pure parts (unit-tested on CPU in tests/test_benchmark_utils.py) --------------------------------------------
def peak_bf16_flops(device_name: str) -> float | None:
    """The chip's peak dense bf16 FLOP/s from its name, or None for a device not in the table.

    ```python
    >>> peak_bf16_flops("NVIDIA H100 80GB HBM3"), peak_bf16_flops("NVIDIA H100 PCIe"), peak_bf16_flops("Tesla T4")
    (989400000000000.0, 756000000000000.0, None)
    ```
    """
    name = device_name.lower()
    for key, flops in PEAK_BF16_FLOPS:
        if key in name:
            return flops
    return None


def model_flops_utilization(num_parameters: int, tokens_per_second: float, peak_flops: float | None) -> float | None:
    """MFU = 6 * N * tokens/s / peak: forward (2N) and backward (4N) FLOPs per token over what the chip can do."""
    if not peak_flops or not tokens_per_second:
        return None
    return 6 * num_parameters * tokens_per_second / peak_flops


def parse_case(text: str) -> tuple[str, str, str, int]:
    """`"qlora:plugin"` -> `("qlora", "plugin", "full", 2048)`, `"lora:stock:chat:8192"` -> `("lora", "stock", "chat",
    8192)`, with a clear error for anything else."""
    parts = text.split(":")
    method, arm, rows, length = (parts + ["", "", "full", str(MAX_LENGTH)][len(parts) :])[:4]
    if len(parts) > 4 or method not in METHODS or arm not in ARMS or rows not in ROWS or not length.isdigit():
        raise argparse.ArgumentTypeError(
            f"unknown case {text!r}: use METHOD:ARM[:ROWS[:LENGTH]] with METHOD in {', '.join(METHODS)}, ARM in "
            f"{', '.join(ARMS)}, ROWS in {', '.join(ROWS)}"
        )
    return method, arm, rows, int(length)


def case_name(case: tuple[str, str, str, int]) -> str:
    return ":".join(map(str, case))


def chat_lengths(count: int, max_length: int, seed: int = 0) -> list[int]:
    """Chat-like row lengths: log-normal, median 512 tokens, sigma 0.8, cut to 64..`max_length` (module docstring)."""
    import math
    import random

    generator = random.Random(seed)
    return [max(64, min(max_length, round(math.exp(generator.gauss(math.log(512), 0.8))))) for _ in range(count)]


def token_throughput(marks: list[tuple[float, float]], warmup_steps: int) -> float | None:
    """Tokens per second from `(seconds, tokens so far)` at the end of each step, after `warmup_steps` steps."""
    measured = marks[warmup_steps:]
    if len(measured) < 2 or measured[-1][0] <= measured[0][0]:
        return None
    return (measured[-1][1] - measured[0][1]) / (measured[-1][0] - measured[0][0])


def case_timeout(elapsed: float, budget: float, per_case: float) -> float | None:
    """Seconds a case may run given the time already spent, or None when too little is left to start one.

    ```python
    >>> case_timeout(100, 470, 180), case_timeout(400, 470, 180), case_timeout(430, 470, 180)
    (180, 70, None)
    ```
    """
    left = budget - elapsed
    if left < MIN_CASE_S:
        return None
    return min(per_case, left)


def default_cases() -> list[tuple[str, str, str, int]]:
    """Most telling first, so that a run stopped at its deadline still has them: LoRA on chat rows and full rows, then
    QLoRA and full fine-tuning on both, then LoRA at 8192 tokens."""
    order = [
        ("lora", "chat"),
        ("lora", "full"),
        ("qlora", "chat"),
        ("full", "chat"),
        ("qlora", "full"),
        ("full", "full"),
    ]
    cases = [(method, arm, rows, MAX_LENGTH) for method, rows in order for arm in ARMS]
    return cases + [("lora", arm, "full", 8192) for arm in ARMS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_bench.json", help="Where to write the JSON report.")
    parser.add_argument("--cases", nargs="+", type=parse_case, help="METHOD:ARM[:ROWS[:LENGTH]] (default: 14).")
    parser.add_argument("--steps", type=int, default=6, help="Optimizer steps per run, warm-up included.")
    parser.add_argument("--warmup-steps", type=int, default=2, help="Steps left out of the throughput.")
    parser.add_argument("--budget-s", type=float, default=470.0, help="Whole-run deadline in seconds (under 8 min).")
    parser.add_argument("--case-timeout-s", type=float, default=180.0, help="Kill a case after this many seconds.")
    parser.add_argument("--peak-tflops", type=float, help="Peak bf16 TFLOP/s, for a GPU not in the table.")
    parser.add_argument("--wheels", help="Install trl-smol's dependencies from this wheel folder (no index).")
    parser.add_argument("--no-install", action="store_true", help="Never run pip; fail if something is missing.")
    parser.add_argument("--checkpoint", help="Reuse a random SmolLM3-3B checkpoint built by an earlier run.")
    parser.add_argument("--case", type=parse_case, help=argparse.SUPPRESS)  # internal: one case in this process
    return parser


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method, row shape and length: plugin / stock throughput and each arm's measured / estimated peak."""
    by_case = {
        (result["method"], result["arm"], result.get("rows", "full"), result.get("max_length", MAX_LENGTH)): result
        for result in results
        if "error" not in result
    }
    shapes = sorted({(method, rows, length) for method, _, rows, length in by_case}, key=str)
    rows_out = []
    for method, shape, length in shapes:
        stock, plugin = by_case.get((method, "stock", shape, length)), by_case.get((method, "plugin", shape, length))
        row: dict[str, Any] = {"method": method, "rows": shape, "max_length": length}
        for name, result in (("stock", stock), ("plugin", plugin)):
            if result is None:
                continue
            row[f"{name}_tokens_per_second"] = result["tokens_per_second"]
            row[f"{name}_mfu"] = result["mfu"]
            row[f"{name}_memory_ratio"] = result["measured_bytes"] / result["estimated_bytes"]
        if stock and plugin and stock["tokens_per_second"] and plugin["tokens_per_second"]:
            row["plugin_over_stock_throughput"] = plugin["tokens_per_second"] / stock["tokens_per_second"]
        rows_out.append(row)
    return rows_out


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(partial, path)  # a reader never sees half a file, even if the run is killed


# --- installation -------------------------------------------------------------------------------------------------
REQUIRED_MODULES = ("trl_smol", "trl", "transformers", "peft", "bitsandbytes", "datasets", "accelerate", "rich")


def missing_modules() -> list[str]:
    import importlib.util

    return [module for module in REQUIRED_MODULES if importlib.util.find_spec(module) is None]


def ensure_installed(wheels: str | None, allow: bool) -> None:
    """`pip install -e <repo>` when a module is missing; torch is already satisfied, so pip leaves it alone."""
    missing = missing_modules()
    if not missing:
        return
    if not allow:
        raise SystemExit(f"missing modules: {', '.join(missing)}; run `pip install -e {REPO_ROOT}`")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "-e", str(REPO_ROOT)]
    if wheels:
        command[4:4] = ["--no-index", "--find-links", wheels]
    print(f"installing ({', '.join(missing)} missing): {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)


# --- one case, in its own process ----------------------------------------------------------------------------------
def run_case(
    case: tuple[str, str, str, int], checkpoint: str, steps: int, warmup_steps: int, peak: float | None
) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from trl_smol import SmolSFTConfig, SmolSFTTrainer
    from trl_smol.memory import MemoryMonitorCallback, estimate_for_run, lora_config, qlora_quantization_config

    method, arm, rows, max_length = case
    cuda = torch.cuda.is_available()  # False only in the CPU smoke test (tests/test_benchmark_utils.py)

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    class StepClock(TrainerCallback):
        """The time each step ended and TRL's `num_tokens` (real tokens so far) logged at it."""

        def __init__(self):
            self.times: list[float] = []
            self.marks: list[tuple[float, float]] = []

        def on_train_begin(self, args, state, control, **kwargs):
            synchronize()
            self.times.append(time.perf_counter())
            self.marks.append((self.times[-1], 0.0))

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            self.times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs and len(self.times) > len(self.marks):
                self.marks.append((self.times[-1], float(logs["num_tokens"])))

    # The same LoRA and NF4 settings as the presets choose.
    peft_config = lora_config(LORA_R) if method in ("lora", "qlora") else None
    quantization_config = qlora_quantization_config("bfloat16") if method == "qlora" else None
    # What both arms set: the length, bf16, and bf16 weights. Batch, accumulation, optimizer and checkpointing are
    # TRL's defaults in the stock arm and the preset's choice in the plugin arm.
    common = dict(
        bf16=cuda,
        model_init_kwargs={"dtype": "bfloat16" if cuda else "float32"},
        max_length=max_length,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    clock, monitor = StepClock(), MemoryMonitorCallback()
    with tempfile.TemporaryDirectory() as output_dir:
        if arm == "stock":
            args = SFTConfig(output_dir=output_dir, **common)
            trainer_class = SFTTrainer
        else:
            args = SmolSFTConfig(output_dir=output_dir, memory_preset="auto", **common)
            trainer_class = SmolSFTTrainer
        # Enough full-length rows for every step, whatever batch the arm ends up with (the preset may change it).
        rows_needed = steps * 64
        generator = torch.Generator().manual_seed(0)
        lengths = chat_lengths(rows_needed, max_length) if rows == "chat" else [max_length] * rows_needed
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        ids = [torch.randint(10, len(tokenizer), (length,), generator=generator).tolist() for length in lengths]
        dataset = Dataset.from_dict({"input_ids": ids})
        trainer = trainer_class(
            model=checkpoint,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            quantization_config=quantization_config,
            callbacks=[clock, monitor],
        )
        args = trainer.args  # after the preset
        trainer.train()
        estimate = estimate_for_run(
            args, checkpoint, peft_config=peft_config, quantization_config=quantization_config,
            device="cuda" if cuda else "cpu",
        )  # fmt: skip
    tokens_per_second = token_throughput(clock.marks, warmup_steps)
    return {
        "method": method,
        "arm": arm,
        "rows": rows,
        "max_length": max_length,
        "banner": trainer.run_plan.banner() if arm == "plugin" else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "optim": str(getattr(args.optim, "value", args.optim)),
        "attn_implementation": (args.model_init_kwargs or {}).get("attn_implementation"),
        "padding_free": bool(getattr(args, "padding_free", False) or getattr(args, "smol_padding_free", False)),
        "use_liger_kernel": bool(getattr(args, "use_liger_kernel", False)),
        "steps": steps,
        "warmup_steps": warmup_steps,
        "tokens_at_steps": [tokens for _, tokens in clock.marks],
        "step_seconds": [round(b - a, 4) for a, b in zip(clock.times, clock.times[1:], strict=False)],
        "tokens_per_second": tokens_per_second,
        "mfu": model_flops_utilization(SMOLLM3_3B_PARAMETERS, tokens_per_second, peak),
        "measured_bytes": int(monitor.measured_peak()),
        "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()) if cuda else None,
        "estimated_bytes": int(estimate.total_bytes),
        "memory_ratio": monitor.measured_peak() / estimate.total_bytes,
    }


# --- driver ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    if args.case:
        peak = args.peak_tflops * 1e12 if args.peak_tflops else None
        result = run_case(args.case, args.checkpoint, args.steps, args.warmup_steps, peak)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    started = time.perf_counter()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_bench.py needs a CUDA GPU (torch.cuda.is_available() is False).")
    ensure_installed(args.wheels, allow=not args.no_install)
    # An install made just now is not on this process's path yet (site .pth files are read at start-up); the case
    # processes start fresh and find it.
    sys.path[:0] = [str(HERE), str(REPO_ROOT)]
    from gpu_memory import build_random_checkpoint

    device = torch.cuda.get_device_name()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_bf16_flops(device)
    cases = args.cases or default_cases()
    report: dict[str, Any] = {
        "device": device,
        "peak_bf16_flops": peak,
        "num_parameters": SMOLLM3_3B_PARAMETERS,
        "torch": torch.__version__,
        "cases": [case_name(case) for case in cases],
        "results": [],
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="smollm3-random-") as scratch:
        checkpoint = args.checkpoint or os.path.join(scratch, "SmolLM3-3B-random")
        if not args.checkpoint:
            print(f"building a random SmolLM3-3B checkpoint in {checkpoint}", flush=True)
            build_random_checkpoint(checkpoint)
        for case in cases:
            name = case_name(case)
            timeout = case_timeout(time.perf_counter() - started, args.budget_s, args.case_timeout_s)
            if timeout is None:
                report["skipped"].append(name)
                continue
            command = [sys.executable, str(Path(__file__).resolve()), "--case", name]
            command += ["--checkpoint", checkpoint, "--steps", str(args.steps)]
            command += ["--warmup-steps", str(args.warmup_steps)]
            if peak:
                command += ["--peak-tflops", str(peak / 1e12)]
            try:
                completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
                lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
                if completed.returncode != 0 or not lines:
                    raise RuntimeError(f"exit code {completed.returncode}: {completed.stderr[-2000:]}")
                result = json.loads(lines[-1][len("RESULT ") :])
                mfu = "n/a" if result["mfu"] is None else f"{result['mfu']:.1%}"
                print(
                    f"{name}: {result['tokens_per_second'] or 0:,.0f} tok/s, MFU {mfu}, peak "
                    f"{result['measured_bytes'] / 2**30:.1f} GiB (estimate {result['estimated_bytes'] / 2**30:.1f})",
                    flush=True,
                )
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                method, arm, rows, length = case
                result = {
                    "method": method,
                    "arm": arm,
                    "rows": rows,
                    "max_length": length,
                    "error": str(error)[-2000:],
                }
                print(f"{name}: failed: {str(error)[-2000:]}", flush=True)
            report["results"].append(result)
            report["summary"] = summarize(report["results"])
            report["seconds"] = round(time.perf_counter() - started, 1)
            write_report(args.out, report)  # partial results survive an interrupted run
    report["summary"] = summarize(report["results"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(args.out, report)
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out} ({report['seconds']:.0f} s); skipped: {', '.join(report['skipped']) or 'none'}")
    return 0 if not report["skipped"] and all("error" not in result for result in report["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
