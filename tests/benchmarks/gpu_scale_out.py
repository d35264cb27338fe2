"""GPU benchmark: `trl sft` with recipes/accelerate/zero3.yaml and fsdp2.yaml on every GPU of the machine.

Full fine-tuning of a SmolLM3-3B-shaped model (random bf16 weights, built from its config, nothing downloaded) on
synthetic chat rows cut at 2048 tokens, launched as a user would: `trl sft --config <recipe> --accelerate_config
<engine config> --num_processes <GPU count>`. Recorded per engine: the banner's engine line (the engine as it really
runs), training tokens per second over the steps after the warm-up (from the times at which the step logs arrive and
TRL's `num_tokens`), each GPU's peak memory (`nvidia-smi`, polled; CUDA context included) against the plugin's
per-GPU estimate after sharding (`trl_smol.memory.sharding`), and the exit code. One JSON file is written.

```bash
python tests/benchmarks/gpu_scale_out.py --out gpu_scale_out.json                    # every case, all GPUs
python tests/benchmarks/gpu_scale_out.py --checkpoint /tmp/SmolLM3-3B-random --engines zero3
```

With fewer than 2 GPUs it writes a report that says so and exits 0: sharding over one process measures nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
ENGINES = {"zero3": "recipes/accelerate/zero3.yaml", "fsdp2": "recipes/accelerate/fsdp2.yaml"}
MAX_LENGTH = 2048
BATCH_SIZE = 2
OPTIM = "adamw_torch_fused"

_ENGINE_LINE = re.compile(r"distributed=([\w.-]+ x\d+ \([^)]*\))")
_LOG_DICT = re.compile(r"\{'(?:loss|train_runtime)'.*?\}")


# --- pure parts (checked on CPU in tests/test_scale_out.py) ------------------------------------------------------
def engine_line(stdout: str) -> str | None:
    """The engine the banner names, e.g. `"deepspeed-zero3 x8 (cuda, nccl)"`; None without a banner."""
    match = _ENGINE_LINE.search(stdout)
    return match.group(1) if match else None


def log_entries(line: str) -> list[dict[str, float]]:
    """The Trainer's log dicts in one line of output (values printed as strings by the plugin's console)."""
    entries = []
    for text in _LOG_DICT.findall(line):
        values = ast.literal_eval(text)
        entries.append({key: float(value) for key, value in values.items()})
    return entries


def tokens_per_second(stamped_logs: list[tuple[float, dict[str, float]]], warmup_steps: int) -> float | None:
    """Tokens/s between the step log at `warmup_steps` and the last one, from (arrival time, log) pairs whose logs
    carry TRL's cumulative `num_tokens` (all processes); None with fewer than 2 steps to measure."""
    steps = [(stamp, log["num_tokens"]) for stamp, log in stamped_logs if "num_tokens" in log]
    measured = steps[max(warmup_steps - 1, 0) :]
    if len(measured) < 2 or measured[-1][0] <= measured[0][0]:
        return None
    return (measured[-1][1] - measured[0][1]) / (measured[-1][0] - measured[0][0])


def recipe(checkpoint: str, data: str, output_dir: str, steps: int) -> dict[str, Any]:
    """Full fine-tuning as recipes/smollm3_full.yaml does it, on local data and for a few steps."""
    return {
        "model_name_or_path": checkpoint,
        "dtype": "bfloat16",
        "smol_chat_template": "smollm3",
        "datasets": [{"path": "json", "data_files": data, "split": "train"}],
        "max_length": MAX_LENGTH,
        "bf16": True,
        "gradient_checkpointing": True,
        "per_device_train_batch_size": BATCH_SIZE,
        "optim": OPTIM,
        "learning_rate": 1.0e-5,
        "max_steps": steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "output_dir": output_dir,
    }


# --- measuring ------------------------------------------------------------------------------------------------------
class GpuMemoryPoller:
    """Each GPU's peak `memory.used` while a run lasts, polled with nvidia-smi (all processes on the GPU)."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s, self.peaks, self._stop = interval_s, {}, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            for line in subprocess.run(query, capture_output=True, text=True).stdout.splitlines():
                index, used = (int(part) for part in line.split(","))
                self.peaks[index] = max(self.peaks.get(index, 0), used * 2**20)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GpuMemoryPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_data(path: Path, rows: int) -> None:
    """Chat rows long enough to be cut at MAX_LENGTH tokens by the byte-level test tokenizer: no padding."""
    words = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing matches".split()
    with path.open("w") as file:
        for index in range(rows):
            answer = " ".join(words[(index + i) % len(words)] for i in range(900))
            question = {"role": "user", "content": f"Tell me story {index}."}
            messages = [question, {"role": "assistant", "content": answer}]
            file.write(json.dumps({"messages": messages}) + "\n")


def trl_command() -> list[str]:
    """The `trl` console script, with the plugin's start-up hook in place.

    The plugin enters `trl sft` through trl_smol.pth, which Python reads only from a site directory; a session that
    puts the source tree on PYTHONPATH (gpu_session.sh) has none, so a copy goes into the user site directory.
    """
    import shutil
    import site

    sites = [*site.getsitepackages(), site.getusersitepackages()]
    if not any(Path(folder, "trl_smol.pth").is_file() for folder in sites):
        Path(site.getusersitepackages()).mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "trl_smol.pth", site.getusersitepackages())
        print(f"trl_smol.pth copied into {site.getusersitepackages()}", flush=True)
    # pip --target (gpu_session.sh's wheels) puts console scripts in <target>/bin
    candidates = [shutil.which("trl"), os.path.join(os.path.dirname(sys.executable), "trl")]
    candidates += [os.path.join(entry, "bin", "trl") for entry in sys.path if entry]
    found = next((path for path in candidates if path and os.path.isfile(path)), None)
    if found is None:
        raise SystemExit("no `trl` console script found: install trl (pip install trl)")
    return [found]


def run_case(engine: str, checkpoint: str, gpus: int, steps: int, warmup_steps: int, timeout: float) -> dict:
    from trl_smol.memory import estimate_memory
    from trl_smol.memory.sharding import sharding_from_accelerate_config

    config = str(REPO_ROOT / ENGINES[engine])
    sharding = sharding_from_accelerate_config(config, num_processes=gpus)
    estimate = estimate_memory(
        checkpoint, method="full", max_length=MAX_LENGTH, per_device_train_batch_size=BATCH_SIZE,
        gradient_checkpointing=True, optim=OPTIM, **sharding.estimate_kwargs(),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=f"scale-out-{engine}-") as folder:
        data, recipe_path = Path(folder, "rows.jsonl"), Path(folder, "recipe.yaml")
        write_data(data, rows=steps * BATCH_SIZE * gpus * 2)
        recipe_path.write_text(json.dumps(recipe(checkpoint, str(data), str(Path(folder, "out")), steps)))
        command = [*trl_command(), "sft", "--config", str(recipe_path), "--accelerate_config", config]
        command += ["--num_processes", str(gpus)]
        stamped: list[tuple[float, dict[str, float]]] = []
        output: list[str] = []
        started = time.perf_counter()
        with GpuMemoryPoller() as poller:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            timer = threading.Timer(timeout, process.kill)
            timer.start()
            for line in process.stdout:  # the step logs are stamped as they arrive
                output.append(line)
                stamped += [(time.perf_counter(), log) for log in log_entries(line)]
            returncode = process.wait()
            timer.cancel()
    stdout = "".join(output)
    return {
        "engine": engine,
        "accelerate_config": ENGINES[engine],
        "num_processes": gpus,
        "returncode": returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "engine_line": engine_line(stdout),
        "tokens_per_second": tokens_per_second(stamped, warmup_steps),
        "losses": [log["loss"] for _, log in stamped if "loss" in log],
        "peak_bytes_per_gpu": [poller.peaks.get(index, 0) for index in range(gpus)],
        "estimated_bytes_per_gpu": int(estimate.total_bytes),
        "sharding": sharding.label,
        "output_tail": stdout[-3000:] if returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_scale_out.json", help="Where to write the JSON report.")
    parser.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=sorted(ENGINES, reverse=True))
    parser.add_argument("--checkpoint", help="Reuse a random SmolLM3-3B checkpoint (gpu_memory.py builds one).")
    parser.add_argument("--steps", type=int, default=6, help="Optimizer steps per run, warm-up included.")
    parser.add_argument("--warmup-steps", type=int, default=2, help="Steps left out of the throughput.")
    parser.add_argument("--case-timeout-s", type=float, default=240.0, help="Kill a run after this many seconds.")
    args = parser.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    import torch

    gpus = torch.cuda.device_count()
    report: dict[str, Any] = {"gpus": gpus, "torch": torch.__version__, "results": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if gpus < 2:
        report["skipped"] = f"{gpus} GPU(s): ZeRO-3 / FSDP2 scale-out needs at least 2"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(report["skipped"])
        return 0
    report["device"] = torch.cuda.get_device_name()
    sys.path[:0] = [str(HERE), str(REPO_ROOT)]
    from gpu_memory import build_random_checkpoint

    with tempfile.TemporaryDirectory(prefix="smollm3-random-") as scratch:
        checkpoint = args.checkpoint or os.path.join(scratch, "SmolLM3-3B-random")
        if not args.checkpoint:
            build_random_checkpoint(checkpoint)
        for engine in args.engines:
            result = run_case(engine, checkpoint, gpus, args.steps, args.warmup_steps, args.case_timeout_s)
            report["results"].append(result)
            out.write_text(json.dumps(report, indent=2) + "\n")  # finished cases survive an interrupted run
            peaks = ", ".join(f"{peak / 2**30:.1f}" for peak in result["peak_bytes_per_gpu"])
            print(
                f"{engine}: exit {result['returncode']}, {result['engine_line']}, "
                f"{result['tokens_per_second'] or 0:,.0f} tok/s, peak GiB per GPU [{peaks}] "
                f"(estimate {result['estimated_bytes_per_gpu'] / 2**30:.1f})",
                flush=True,
            )
    return 0 if all(result["returncode"] == 0 for result in report["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
