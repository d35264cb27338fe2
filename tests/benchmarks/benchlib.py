"""Shared parts of the benchmark suite: figures and their targets, the machine, recipes, and timed `trl sft` runs.

Every benchmark script writes one JSON document:

```python
{
    "benchmark": "overhead",
    "figures": [{"name": "training tokens/s, plugin / stock", "value": 0.995, "target": ">= 0.98", "holds": True}],
    "details": {...},            # raw measurements, per run
    "machine": {...},            # see `machine_info`
    "seconds": 312.4,            # wall time of the benchmark itself
}
```

`run_all.py` collects them into `report.json` and `report.md`. Figures are ratios measured side by side in one run;
absolute times are only recorded for context.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_RECIPE = REPO_ROOT / "recipes" / "smollm3_demo.yaml"
TEMPLATE_PATH = REPO_ROOT / "trl_smol" / "templating" / "smollm3.jinja"
# The date every benchmark conversation renders in its system header, so that the stock path (which has no
# `chat_template_today`) and the plugin render byte-identical text.
BENCH_TODAY = "08 July 2025"

_TARGET = re.compile(r"^\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")


# --- figures -------------------------------------------------------------------------------------------------------
def check_target(value: float | None, target: str | None) -> bool | None:
    """Whether `value` meets `target`: `">= 0.98"`, `"<= 1.05"`, or `"A..B"` (inclusive); None without a target.

    ```python
    >>> check_target(0.99, ">= 0.98"), check_target(1.3, "0.75..1.25"), check_target(1.0, None)
    (True, False, None)
    ```
    """
    if target is None or value is None:
        return None
    if ".." in target:
        low, high = (float(part) for part in target.split(".."))
        return low <= value <= high
    match = _TARGET.match(target)
    if match is None:
        raise ValueError(f"Unknown target {target!r}; use '>= X', '<= X', '> X', '< X' or 'A..B'.")
    operator, bound = match.group(1), float(match.group(2))
    return {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound}[operator]


def figure(name: str, value: float | None, target: str | None = None, unit: str = "", note: str = "") -> dict:
    """One row of the report: a measured figure, its target and whether it holds."""
    return {
        "name": name,
        "value": None if value is None else round(float(value), 4),
        "unit": unit,
        "target": target,
        "holds": check_target(value, target),
        "note": note,
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --- machine ---------------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where the figures come from: CPU, cores, RAM, load, accelerator and library versions."""
    import psutil

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for module in ("torch", "transformers", "trl", "datasets", "peft", "trl_smol"):
        try:
            info[module] = __import__(module).__version__
        except Exception:  # a missing optional library does not stop the benchmark
            info[module] = None
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:
        info["gpu"] = None
    return info


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the markdown report."""
    device = info.get("gpu") or f"{info.get('cores')} CPU cores"
    load = info.get("load_average")
    load_text = f", load {load[0]:.1f}" if load else ""
    return (
        f"{device} ({info.get('cpu')}, {info.get('ram_gib')} GiB RAM{load_text}); torch {info.get('torch')}, "
        f"transformers {info.get('transformers')}, trl {info.get('trl')}, trl-smol {info.get('trl_smol')}"
    )


def write_result(path: str | os.PathLike, benchmark: str, figures: list[dict], details: dict, started: float) -> dict:
    """Write a benchmark's JSON document (see the module docstring) and print its figures as a rich table."""
    document = {
        "benchmark": benchmark,
        "figures": figures,
        "details": details,
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print_figures(benchmark, figures)
    print(f"wrote {path} ({document['seconds']:.0f} s)", flush=True)
    return document


def print_figures(benchmark: str, figures: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"benchmark: {benchmark}")
    for column in ("figure", "value", "target", "holds"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for row in figures:
        table.add_row(row["name"], format_value(row), row["target"] or "-", format_holds(row["holds"]))
    Console(width=120).print(table)


def format_value(row: dict) -> str:
    value = row.get("value")
    if value is None:
        return "n/a"
    text = f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {row['unit']}".strip()


def format_holds(holds: bool | None) -> str:
    return "n/a" if holds is None else "yes" if holds else "no"


# --- recipes and data ------------------------------------------------------------------------------------------------
def load_recipe(path: str | os.PathLike = DEMO_RECIPE) -> dict[str, Any]:
    import yaml

    with open(path) as file:
        return yaml.safe_load(file)


def plugin_only_keys() -> set[str]:
    """Recipe keys that only the plugin understands: stock `trl sft` would reject them."""
    from trl.trainer.sft_config import SFTConfig

    from trl_smol import SmolSFTConfig

    return set(SmolSFTConfig.__dataclass_fields__) - set(SFTConfig.__dataclass_fields__)


def stock_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The same run for stock TRL: plugin keys removed, the same SmolLM3 template given by TRL's own
    `chat_template_path`, and `<|im_end|>` as eos as the plugin sets it."""
    stock = {key: value for key, value in recipe.items() if key not in plugin_only_keys()}
    stock["chat_template_path"] = str(TEMPLATE_PATH)
    stock.setdefault("eos_token", "<|im_end|>")
    return stock


def write_yaml(data: dict[str, Any], path: str | os.PathLike) -> Path:
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def pin_today(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy a conversation JSONL file with `today` set in every row's `chat_template_kwargs`.

    Stock TRL renders the template with the clock's date, the plugin with `chat_template_today`: pinning the date in
    the data makes both paths see the same text and the same number of tokens.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, encoding="utf-8") as lines, open(target, "w", encoding="utf-8") as out:
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            row["chat_template_kwargs"] = {**(row.get("chat_template_kwargs") or {}), "today": BENCH_TODAY}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def demo_model_path() -> str:
    """The demo checkpoint, built on first use (`trl_smol.demo.materialize_demo_model`)."""
    from trl_smol.demo import materialize_demo_model

    return str(materialize_demo_model())


def prepared_demo_recipe(workdir: Path, **overrides: Any) -> dict[str, Any]:
    """The demo recipe made runnable from `workdir`: absolute paths, the local demo model, data with a pinned date,
    and `overrides` applied (a value of None removes the key, so the default applies)."""
    recipe = load_recipe(DEMO_RECIPE)
    recipe["model_name_or_path"] = demo_model_path()
    datasets = []
    for entry in recipe.get("datasets") or []:
        entry = dict(entry)
        if entry.get("data_files"):
            source = REPO_ROOT / entry["data_files"]
            entry["data_files"] = str(pin_today(source, workdir / "data" / source.name))
        datasets.append(entry)
    if datasets:
        recipe["datasets"] = datasets
    prompts = recipe.get("sample_prompts")
    if isinstance(prompts, str) and (REPO_ROOT / prompts).exists():
        recipe["sample_prompts"] = str(REPO_ROOT / prompts)
    for key, value in overrides.items():
        if value is None:
            recipe.pop(key, None)
        else:
            recipe[key] = value
    if not recipe.get("sample_prompts"):
        recipe.pop("sample_checks", None)  # checks score sample prompts: without prompts, samples are off
    return recipe


# --- timed `trl sft` runs --------------------------------------------------------------------------------------------
# The largest resident set of the process tree below the wrapper (the training process), as the kernel counts it:
# exact, unlike polling.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print(f'BENCH_MAXRSS_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', flush=True)\n"
    "sys.exit(code)\n"
)
_TRAINING_DONE = "Training completed."
_BANNER = " active ("  # trl_smol.plan.RunPlan.banner: "trl-smol 0.2.0 active (trl sft, run ...): ..."
_SAMPLE_PASS = re.compile(r"Samples at step (\d+) \(([0-9.]+)s\)")  # the samples callback's table title


@dataclass
class RunResult:
    """What one `trl sft` run measured. `train_runtime` is transformers' figure for the training loop (it includes
    callbacks at train start and during training); `end_seconds` is the time from the final metrics line to "Training
    completed." (the `on_train_end` callbacks); `wall_seconds` is the whole command."""

    label: str
    returncode: int
    wall_seconds: float
    train_runtime: float | None = None
    num_tokens: float | None = None
    end_seconds: float | None = None
    max_rss_bytes: int | None = None
    losses: list[float] = field(default_factory=list)
    sample_passes: list[tuple[int, float]] = field(default_factory=list)  # (step, seconds) as the callback reports
    # (seconds since start, cumulative num_tokens) at each training log line, as read from the unbuffered output
    token_marks: list[tuple[float, float]] = field(default_factory=list)
    banner: str | None = None  # the plugin's "trl-smol ... active" line: what the run did beyond stock TRL
    tail: str = ""

    @property
    def tokens_per_second(self) -> float | None:
        if not self.num_tokens or not self.train_runtime:
            return None
        return self.num_tokens / self.train_runtime

    @property
    def steady_tokens_per_second(self) -> float | None:
        """Tokens per second between the first and the last training log line: with `logging_steps: 1`, every step
        but the first, so start-up, data preparation and the first step's one-time costs are left out."""
        if len(self.token_marks) < 2:
            return None
        (first_time, first_tokens), (last_time, last_tokens) = self.token_marks[0], self.token_marks[-1]
        if last_time <= first_time:
            return None
        return (last_tokens - first_tokens) / (last_time - first_time)

    @property
    def train_seconds(self) -> float | None:
        """Training loop plus the end-of-training callbacks: the time a user waits for `train()`."""
        if self.train_runtime is None:
            return None
        return self.train_runtime + (self.end_seconds or 0.0)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("tail")
        data["tokens_per_second"] = self.tokens_per_second
        data["steady_tokens_per_second"] = self.steady_tokens_per_second
        data["train_seconds"] = self.train_seconds
        if self.returncode != 0:
            data["tail"] = self.tail
        return data


def step_times(run: RunResult) -> list[tuple[float, float]]:
    """(seconds, tokens) of each logged step after the first, from the arrival times of the log lines."""
    marks = run.token_marks
    return [(t1 - t0, n1 - n0) for (t0, n0), (t1, n1) in zip(marks, marks[1:], strict=False)]


def best_step_tokens_per_second(runs: list[RunResult]) -> float | None:
    """Tokens per second if every step took its fastest time over `runs` (runs of one arm: same steps, same tokens).

    Another process on the machine only ever adds time, so the fastest of several tries of the same step is the
    best estimate of its cost (the reasoning of Python's `timeit`); a slowdown that hits one run for a while no longer
    decides the figure, as it does with whole-run medians. None if the runs logged different steps or tokens.
    """
    per_run = [step_times(run) for run in runs]
    if not per_run or not per_run[0] or any(len(times) != len(per_run[0]) for times in per_run):
        return None
    if any(len({tokens for _, tokens in step}) != 1 for step in zip(*per_run, strict=True)):
        return None
    seconds = sum_of_fastest([[step_seconds for step_seconds, _ in times] for times in per_run])
    tokens = sum(step_tokens for _, step_tokens in per_run[0])
    return tokens / seconds if seconds > 0 else None


def sum_of_fastest(tries: list[list[float]]) -> float:
    """Sum over items (steps, batches) of each item's fastest time; `tries[i][j]` is try i of item j."""
    return sum(min(item) for item in zip(*tries, strict=True))


def parse_log_line(line: str) -> dict[str, Any] | None:
    """A metrics dict printed by transformers (`{'loss': '1.2', ...}`), values as floats; None for other lines.

    ```python
    >>> parse_log_line("{'loss': '2.199', 'num_tokens': '1010', 'epoch': '0.02'}")
    {'loss': 2.199, 'num_tokens': 1010.0, 'epoch': 0.02}
    ```
    """
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        data = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(data, dict):
        return None
    parsed = {}
    for key, value in data.items():
        try:
            parsed[key] = float(value)
        except (TypeError, ValueError):
            parsed[key] = value
    return parsed


def trl_command() -> list[str]:
    """The `trl` console script of this interpreter (the plugin recognises its process by that name)."""
    candidate = Path(sys.executable).parent / "trl"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("trl")
    if found is None:
        raise SystemExit("The `trl` command is not installed next to this Python; run `pip install -e .` first.")
    return [found]


def bench_env(plugin: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("WANDB_MODE", "disabled")
    if plugin:
        env.pop("TRL_SMOL_DISABLE", None)
    else:
        env["TRL_SMOL_DISABLE"] = "1"
    return env


def run_trl_sft(recipe_path: str | os.PathLike, *, plugin: bool, label: str, cwd: str | os.PathLike) -> RunResult:
    """Run `trl sft --config recipe` (stock with `TRL_SMOL_DISABLE=1` when `plugin` is False) and measure it.

    Each run writes into its own `runs/<label>` folder under `cwd`: the plugin rightly refuses to start over the
    output of an earlier run (run safety), so a second round of an arm needs a fresh folder."""
    output_dir = Path(cwd) / "runs" / re.sub(r"[^\w.-]+", "-", label).strip("-")
    command = [sys.executable, "-c", _RSS_WRAPPER, *trl_command(), "sft", "--config", str(recipe_path)]
    command += ["--output_dir", str(output_dir)]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=bench_env(plugin),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    result = RunResult(label=label, returncode=-1, wall_seconds=0.0)
    tail: list[str] = []
    final_metrics_at = None
    assert process.stdout is not None
    for line in process.stdout:
        now = time.perf_counter()
        tail = (tail + [line.rstrip()])[-60:]
        if line.startswith("BENCH_MAXRSS_KB "):
            result.max_rss_bytes = int(line.split()[1]) * 1024
            continue
        if _BANNER in line and result.banner is None:
            result.banner = line.strip()
            continue
        if _TRAINING_DONE in line and final_metrics_at is not None:
            result.end_seconds = now - final_metrics_at
            continue
        sample_pass = _SAMPLE_PASS.search(line)
        if sample_pass:
            result.sample_passes.append((int(sample_pass.group(1)), float(sample_pass.group(2))))
            continue
        metrics = parse_log_line(line)
        if metrics is None:
            continue
        if "train_runtime" in metrics:
            result.train_runtime = metrics["train_runtime"]
            final_metrics_at = now
        if "num_tokens" in metrics:
            result.num_tokens = metrics["num_tokens"]
        if "loss" in metrics:
            result.losses.append(metrics["loss"])
            if "num_tokens" in metrics:
                result.token_marks.append((now - started, metrics["num_tokens"]))
    result.returncode = process.wait()
    result.wall_seconds = time.perf_counter() - started
    result.tail = "\n".join(tail)
    status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
    tps, steady = result.tokens_per_second, result.steady_tokens_per_second
    print(
        f"  {label}: {status}, train_runtime {result.train_runtime} s, tokens/s "
        f"{'n/a' if tps is None else f'{tps:.1f}'} (after the first step: "
        f"{'n/a' if steady is None else f'{steady:.1f}'}), wall {result.wall_seconds:.0f} s",
        flush=True,
    )
    if result.returncode != 0:
        print(result.tail[-4000:], file=sys.stderr, flush=True)
    return result


def require_success(runs: Sequence[RunResult]) -> None:
    failed = [run.label for run in runs if run.returncode != 0 or run.train_runtime is None]
    if failed:
        raise SystemExit(f"runs failed or printed no train_runtime: {', '.join(failed)} (their output is above)")
