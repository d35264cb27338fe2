"""Preset payoff on CPU: the demo recipe under `memory_preset: auto` vs stock TRL's defaults vs the 0.2.0 preset.

Three arms, each `trl sft` on the demo recipe with its batch, checkpointing, optimizer and packing settings
(`MEMORY_KEYS`) left out and samples off, so that what the arm stands for decides them. The recipe's `max_length: 512`
stays: no demo row is that long, so it changes no row, only the worst case the estimator plans for.

- `stock`: stock TRL, without the plugin (TRL's defaults: 8 rows per step, padded, gradient checkpointing on);
- `preset 0.2.0`: the plugin with the settings the 0.2.0 `auto` preset chose on a CPU (micro-batch 2 x 8
  accumulation, padded, gradient checkpointing on, fused AdamW), written out explicitly;
- `auto`: the plugin with `memory_preset: auto` (TRL's 8 rows per step in the largest micro-batch that fits,
  padding-free batches, checkpointing off when it fits, one torch thread per core where accelerate's launcher
  would start training with one: tests/test_cpu_threads.py, and TRL's loss head handed only the labelled positions:
  tests/test_labelled_scoring.py);
- `auto, every position`: `auto` with `smol_score_labelled_only: false`, so TRL's head projects every position as it
  does on a CPU; what that one lever is worth;
- `long rows, stock` / `long rows, auto`: the same two with rows that fill `max_length` (demo conversations chained
  into rows of about 870 tokens, cut at 512), where padding costs nothing and a batch form that computed more than
  padding (one row of the whole micro-batch under SDPA) would lose;
- `busy, stock` / `busy, auto`: the demo arms while a competing process spins on one core (a browser, a second run,
  a CI job), where more threads than free cores would lose.

`stock`, `auto` and `auto, every position` train on the same rows in the same steps, so their losses must agree
step by step (logged values carry 4 significant digits). Figures: non-padding tokens per second after the first step
(TRL's `num_tokens` counts attention-mask tokens, or every token of a padding-free batch, between the first and the
last per-step log line), the whole-loop ratio beside it, the largest per-step loss differences (auto vs stock,
labelled positions vs every position), and peak RSS. Targets: auto / stock >= 2.0 on the demo rows and >= 1.0 on
long rows and on a busy machine, auto / preset 0.2.0 >= 1.5, loss differences <= 0.01.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_presets.py --out presets.json
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_presets.py --arms "long rows, stock" "long rows, auto"
```
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_overhead import interleaved, max_loss_difference
from benchlib import (
    figure,
    median,
    prepared_demo_recipe,
    require_success,
    run_trl_sft,
    stock_recipe,
    write_result,
    write_yaml,
)

# Settings a memory preset chooses; left unset in both arms so that TRL's defaults meet the preset's choices.
MEMORY_KEYS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "gradient_checkpointing",
    "optim",
    "packing",
    "padding_free",
)
ARMS = (
    "stock",
    "preset 0.2.0",
    "auto",
    "auto, every position",
    "long rows, stock",
    "long rows, auto",
    "busy, stock",
    "busy, auto",
)
# What the 0.2.0 `auto` preset chose on a CPU for the demo recipe without its memory settings (its `cpu` tier).
PRESET_0_2_0 = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "gradient_checkpointing": True,
    "optim": "adamw_torch_fused",
    "bf16": False,
}


def planned_changes(recipe_path: Path) -> list[dict[str, Any]]:
    """What `memory_preset: auto` changes for this recipe on this machine, as the start-up table lists it (the preset's
    rows and its levers': padding-free batches, threads, labelled-only loss positions)."""
    from trl import ModelConfig, ScriptArguments, get_peft_config

    from trl_smol import SmolSFTConfig
    from trl_smol.data.mixtures import SmolDatasetMixtureConfig
    from trl_smol.parser import SmolTrlParser
    from trl_smol.plan import plan_run

    parser = SmolTrlParser((ScriptArguments, SmolSFTConfig, ModelConfig, SmolDatasetMixtureConfig))
    _, training_args, model_args, _ = parser.parse_args_and_config(["--config", str(recipe_path)])
    training_args.memory_preset = "auto"
    plan = plan_run(training_args, model_name=model_args.model_name_or_path, peft_config=get_peft_config(model_args))
    return [
        {"setting": row.setting, "value": str(row.value), "status": row.status.value, "reason": row.reason}
        for row in plan.preset_rows()
    ]


def long_rows(source: Path, target: Path, rows: int = 64, per_row: int = 8) -> Path:
    """Conversations that fill `max_length`: `per_row` demo conversations (no system turn, no reasoning mode) chained
    into one multi-turn conversation, about 870 tokens, which TRL truncates to the recipe's 512."""
    import json

    plain = [
        row
        for row in map(json.loads, source.read_text().splitlines())
        if row["messages"][0]["role"] != "system" and not row["chat_template_kwargs"].get("enable_thinking")
    ]
    chained = []
    for index in range(rows):
        parts = [plain[(index * per_row + offset) % len(plain)] for offset in range(per_row)]
        messages = [message for part in parts for message in part["messages"]]
        chained.append({"messages": messages, "chat_template_kwargs": parts[0]["chat_template_kwargs"]})
    target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chained))
    return target


def labelled_share(recipe: dict[str, Any]) -> float:
    """Share of the recipe's predicted positions (every token after a row's first) that carry a label, with the
    SmolLM3 template and `assistant_only_loss` as the plugin tokenizes them."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from trl_smol import SmolSFTConfig
    from trl_smol.data import prepare_conversations, tokenize_conversations
    from trl_smol.templating import apply_smollm3_template

    tokenizer = AutoTokenizer.from_pretrained(recipe["model_name_or_path"])
    apply_smollm3_template(tokenizer)
    args = SmolSFTConfig(output_dir="unused", bf16=False, assistant_only_loss=True, max_length=recipe["max_length"])
    (source,) = recipe["datasets"]
    rows = load_dataset("json", data_files=source["data_files"], split="train").select_columns(source["columns"])
    rows = prepare_conversations(
        rows, args=args, processing_class=tokenizer, template_defaults=args.template_defaults(True)
    )
    labels = tokenize_conversations(rows, tokenizer, args=args)["labels"]
    return sum(sum(label != -100 for label in row[1:]) for row in labels) / sum(len(row) - 1 for row in labels)


def features(run: Any) -> str:
    """What the plugin did in a run, from its banner ("threads=2 (memory preset cpu), ...")."""
    return (run.banner or "no banner").split("): ", 1)[-1]


def arm_recipes(base: dict[str, Any], long: dict[str, Any], workdir: Path) -> dict[str, dict[str, Any]]:
    """The arms' recipes from the demo recipe without its memory settings (`base`), and the same with rows that fill
    `max_length` (`long`). The `busy` arms run the demo recipe while a competing process spins on one core."""
    auto = {"memory_preset": "auto"}
    return {
        "stock": {**stock_recipe(base), "output_dir": str(workdir / "stock")},
        "preset 0.2.0": {**base, **PRESET_0_2_0, "output_dir": str(workdir / "preset-0.2.0")},
        "auto": {**base, **auto, "output_dir": str(workdir / "auto")},
        "auto, every position": {
            **base,
            **auto,
            "smol_score_labelled_only": False,
            "output_dir": str(workdir / "every"),
        },
        "long rows, stock": {**stock_recipe(long), "output_dir": str(workdir / "long-stock")},
        "long rows, auto": {**long, **auto, "output_dir": str(workdir / "long-auto")},
        "busy, stock": {**stock_recipe(base), "output_dir": str(workdir / "busy-stock")},
        "busy, auto": {**base, **auto, "output_dir": str(workdir / "busy-auto")},
    }


@contextlib.contextmanager
def competing_process(busy: bool) -> Iterator[None]:
    """A process outside the run spinning on one core while the block runs (when `busy`): a browser, a second run or
    a CI job on the same machine."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def demo_figures(runs, tps, loop, rss, changes, share, max_steps) -> list[dict[str, Any]]:
    """The demo arms' figures (the arms that ran: `--arms` may leave some out)."""
    figures = []
    changed = ", ".join(f"{row['setting']}={row['value']}" for row in changes if row["status"] == "changed")
    if {"auto", "stock"} <= set(runs):
        figures += [
            figure(
                "non-padding tokens/s after the first step, auto / stock TRL",
                tps["auto"] / tps["stock"],
                ">= 2.0",
                note=f"auto: {changed}; {features(runs['auto'][0])}; the same {max_steps * 8} rows in "
                f"{max_steps} steps in both arms",
            ),
            figure(
                "non-padding tokens/s, whole loop, auto / stock TRL",
                loop["auto"] / loop["stock"],
                note="first step in",
            ),
            figure(
                "largest per-step loss difference, auto vs stock TRL",
                max_loss_difference(runs["auto"][0].losses, runs["stock"][0].losses),
                "<= 0.01",
                note="same rows per step; logged losses carry 4 significant digits",
            ),
            figure("peak RSS, auto / stock TRL", rss["auto"] / rss["stock"], note="auto trades unused RAM for speed"),
            figure("peak RSS with stock TRL", rss["stock"] / 2**20, unit="MiB"),
            figure("peak RSS with memory_preset auto", rss["auto"] / 2**20, unit="MiB"),
        ]
    if {"auto", "preset 0.2.0"} <= set(runs):
        figures.append(
            figure(
                "non-padding tokens/s after the first step, auto / preset 0.2.0",
                tps["auto"] / tps["preset 0.2.0"],
                ">= 1.5",
                note="0.2.0's CPU choice: micro-batch 2 x 8, padded, checkpointing on",
            )
        )
    if {"auto", "auto, every position"} <= set(runs):
        figures += [
            figure(
                "non-padding tokens/s after the first step, auto / auto scoring every position",
                tps["auto"] / tps["auto, every position"],
                note="the labelled-only lever alone (smol_score_labelled_only); "
                f"{share:.0%} of the demo rows' predicted tokens carry a label",
            ),
            figure(
                "largest per-step loss difference, labelled positions only vs every position",
                max_loss_difference(runs["auto"][0].losses, runs["auto, every position"][0].losses),
                "<= 0.01",
                note="auto with and without smol_score_labelled_only",
            ),
        ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="presets.json", help="Where to write the JSON result.")
    parser.add_argument("--rounds", type=int, default=1, help="Runs of each arm, interleaved.")
    parser.add_argument("--max-steps", type=int, default=4, help="Optimizer steps of every arm (2 or more).")
    parser.add_argument("--arms", nargs="+", default=ARMS, choices=ARMS, help="The arms to run (default: all).")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-presets-") as scratch:
        workdir = Path(scratch)
        common = {"max_steps": args.max_steps, "logging_steps": 1, "report_to": "none", "disable_tqdm": True}
        base = prepared_demo_recipe(workdir, sample_prompts=None, **common, **dict.fromkeys(MEMORY_KEYS))
        base = {key: value for key, value in base.items() if value is not None}
        (source,) = base["datasets"]
        long_data = long_rows(Path(source["data_files"]), workdir / "data" / "long_rows.jsonl")
        long = {**base, "datasets": [{**source, "data_files": str(long_data)}]}
        arms = {arm: recipe for arm, recipe in arm_recipes(base, long, workdir).items() if arm in args.arms}
        recipes = {arm: write_yaml(recipe, workdir / f"{index}.yaml") for index, (arm, recipe) in
                   enumerate(arms.items())}  # fmt: skip
        changes = {arm: planned_changes(recipes[arm]) for arm in ("auto", "long rows, auto") if arm in recipes}
        share = labelled_share(base)  # the data lives in `scratch`
        runs: dict[str, list] = {arm: [] for arm in recipes}
        for index, arm in enumerate(interleaved(args.rounds, tuple(recipes))):
            label = f"{arm} #{index // len(recipes) + 1}"
            with competing_process(arm.startswith("busy")):
                runs[arm].append(run_trl_sft(recipes[arm], plugin=not arm.endswith("stock"), label=label, cwd=workdir))
        require_success([run for arm_runs in runs.values() for run in arm_runs])

    if any(run.steady_tokens_per_second is None for arm_runs in runs.values() for run in arm_runs):
        raise SystemExit("A run logged fewer than two training steps: use --max-steps 2 or more.")
    tps = {arm: median([run.steady_tokens_per_second for run in arm_runs]) for arm, arm_runs in runs.items()}
    loop = {arm: median([run.tokens_per_second for run in arm_runs]) for arm, arm_runs in runs.items()}
    rss = {arm: median([run.max_rss_bytes for run in arm_runs]) for arm, arm_runs in runs.items()}
    figures = demo_figures(runs, tps, loop, rss, changes.get("auto", []), share, args.max_steps)
    if {"long rows, stock", "long rows, auto"} <= set(runs):
        long_changed = ", ".join(f"{row['setting']}={row['value']}" for row in changes["long rows, auto"]
                                 if row["status"] == "changed")  # fmt: skip
        figures += [
            figure(
                "non-padding tokens/s after the first step on rows that fill max_length, auto / stock TRL",
                tps["long rows, auto"] / tps["long rows, stock"],
                ">= 1.0",
                note=f"demo conversations chained into rows cut at max_length 512; auto: {long_changed}; "
                f"{features(runs['long rows, auto'][0])}",
            ),
            figure(
                "largest per-step loss difference on rows that fill max_length, auto vs stock TRL",
                max_loss_difference(runs["long rows, auto"][0].losses, runs["long rows, stock"][0].losses),
                "<= 0.01",
                note="same rows per step",
            ),
        ]
    if {"busy, stock", "busy, auto"} <= set(runs):
        figures.append(
            figure(
                "non-padding tokens/s after the first step with a competing process on one core, auto / stock TRL",
                tps["busy, auto"] / tps["busy, stock"],
                ">= 1.0",
                note=f"a Python loop spinning during both runs; auto: {features(runs['busy, auto'][0])}",
            )
        )
    details = {
        "max_steps": args.max_steps,
        "rounds": args.rounds,
        "tokens_per_second": tps,
        "preset_rows": changes,
        "arms": list(runs),
        "preset_0_2_0": PRESET_0_2_0,
        "runs": {arm: [run.summary() for run in arm_runs] for arm, arm_runs in runs.items()},
    }
    write_result(args.out, "presets", figures, details, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
