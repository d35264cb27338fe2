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
  does on a CPU; what that one lever is worth.

`stock`, `auto` and `auto, every position` train on the same rows in the same steps, so their losses must agree
step by step (logged values carry 4 significant digits). Figures: non-padding tokens per second after the first step
(TRL's `num_tokens` counts attention-mask tokens, or every token of a padding-free batch, between the first and the
last per-step log line), the whole-loop ratio beside it, the largest per-step loss differences (auto vs stock,
labelled positions vs every position), and peak RSS. Targets: auto / stock >= 2.0, auto / preset 0.2.0 >= 1.5, loss
differences <= 0.01.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_presets.py --out presets.json
```
"""

from __future__ import annotations

import argparse
import tempfile
import time
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
# What the 0.2.0 `auto` preset chose on a CPU for the demo recipe without its memory settings (its `cpu` tier).
PRESET_0_2_0 = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "gradient_checkpointing": True,
    "optim": "adamw_torch_fused",
    "bf16": False,
}


def planned_changes(recipe_path: Path) -> list[dict[str, Any]]:
    """What `memory_preset: auto` changes for this recipe on this machine, as the start-up table lists it."""
    from trl import ModelConfig, ScriptArguments, get_peft_config

    from trl_smol import SmolSFTConfig
    from trl_smol.data.mixtures import SmolDatasetMixtureConfig
    from trl_smol.memory import plan_memory_preset
    from trl_smol.parser import SmolTrlParser

    parser = SmolTrlParser((ScriptArguments, SmolSFTConfig, ModelConfig, SmolDatasetMixtureConfig))
    _, training_args, model_args, _ = parser.parse_args_and_config(["--config", str(recipe_path)])
    plan = plan_memory_preset(
        "auto", training_args, model_name=model_args.model_name_or_path, peft_config=get_peft_config(model_args)
    )
    return [
        {"setting": row.setting, "value": str(row.value), "status": row.status, "reason": row.reason}
        for row in plan.rows
    ]


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


def arm_recipes(base: dict[str, Any], workdir: Path) -> dict[str, dict[str, Any]]:
    """The arms' recipes from the demo recipe without its memory settings (`base`)."""
    return {
        "stock": {**stock_recipe(base), "output_dir": str(workdir / "stock")},
        "preset 0.2.0": {**base, **PRESET_0_2_0, "output_dir": str(workdir / "preset-0.2.0")},
        "auto": {**base, "memory_preset": "auto", "output_dir": str(workdir / "auto")},
        "auto, every position": {
            **base,
            "memory_preset": "auto",
            "smol_score_labelled_only": False,
            "output_dir": str(workdir / "every"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="presets.json", help="Where to write the JSON result.")
    parser.add_argument("--rounds", type=int, default=1, help="Runs of each arm, interleaved.")
    parser.add_argument("--max-steps", type=int, default=4, help="Optimizer steps of every arm (2 or more).")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-presets-") as scratch:
        workdir = Path(scratch)
        common = {"max_steps": args.max_steps, "logging_steps": 1, "report_to": "none", "disable_tqdm": True}
        base = prepared_demo_recipe(workdir, sample_prompts=None, **common, **dict.fromkeys(MEMORY_KEYS))
        base = {key: value for key, value in base.items() if value is not None}
        recipes = {arm: write_yaml(recipe, workdir / f"{index}.yaml") for index, (arm, recipe) in
                   enumerate(arm_recipes(base, workdir).items())}  # fmt: skip
        changes = planned_changes(recipes["auto"])
        share = labelled_share(base)  # the data lives in `scratch`
        runs: dict[str, list] = {arm: [] for arm in recipes}
        for index, arm in enumerate(interleaved(args.rounds, tuple(recipes))):
            label = f"{arm} #{index // len(recipes) + 1}"
            runs[arm].append(run_trl_sft(recipes[arm], plugin=arm != "stock", label=label, cwd=workdir))
        require_success([run for arm_runs in runs.values() for run in arm_runs])

    if any(run.steady_tokens_per_second is None for arm_runs in runs.values() for run in arm_runs):
        raise SystemExit("A run logged fewer than two training steps: use --max-steps 2 or more.")
    tps = {arm: median([run.steady_tokens_per_second for run in arm_runs]) for arm, arm_runs in runs.items()}
    loop = {arm: median([run.tokens_per_second for run in arm_runs]) for arm, arm_runs in runs.items()}
    rss = {arm: median([run.max_rss_bytes for run in arm_runs]) for arm, arm_runs in runs.items()}
    loss_gap = max_loss_difference(runs["auto"][0].losses, runs["stock"][0].losses)
    scoring_gap = max_loss_difference(runs["auto"][0].losses, runs["auto, every position"][0].losses)
    changed = ", ".join(f"{row['setting']}={row['value']}" for row in changes if row["status"] == "changed")
    figures = [
        figure(
            "non-padding tokens/s after the first step, auto / stock TRL",
            tps["auto"] / tps["stock"],
            ">= 2.0",
            note=f"auto: {changed}; {features(runs['auto'][0])}; the same {args.max_steps * 8} rows in "
            f"{args.max_steps} steps in both arms",
        ),
        figure(
            "non-padding tokens/s after the first step, auto / preset 0.2.0",
            tps["auto"] / tps["preset 0.2.0"],
            ">= 1.5",
            note="0.2.0's CPU choice: micro-batch 2 x 8, padded, checkpointing on",
        ),
        figure(
            "non-padding tokens/s after the first step, auto / auto scoring every position",
            tps["auto"] / tps["auto, every position"],
            note="the labelled-only lever alone (smol_score_labelled_only); "
            f"{share:.0%} of the demo rows' predicted tokens carry a label",
        ),
        figure(
            "non-padding tokens/s, whole loop, auto / stock TRL", loop["auto"] / loop["stock"], note="first step in"
        ),
        figure(
            "largest per-step loss difference, auto vs stock TRL",
            loss_gap,
            "<= 0.01",
            note="same rows per step; logged losses carry 4 significant digits",
        ),
        figure(
            "largest per-step loss difference, labelled positions only vs every position",
            scoring_gap,
            "<= 0.01",
            note="auto with and without smol_score_labelled_only",
        ),
        figure("peak RSS, auto / stock TRL", rss["auto"] / rss["stock"], note="auto trades unused RAM for speed"),
        figure("peak RSS with stock TRL", rss["stock"] / 2**20, unit="MiB"),
        figure("peak RSS with memory_preset auto", rss["auto"] / 2**20, unit="MiB"),
    ]
    details = {
        "max_steps": args.max_steps,
        "rounds": args.rounds,
        "tokens_per_second": tps,
        "preset_rows": changes,
        "preset_0_2_0": PRESET_0_2_0,
        "runs": {arm: [run.summary() for run in arm_runs] for arm, arm_runs in runs.items()},
    }
    write_result(args.out, "presets", figures, details, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
