"""Preset payoff on CPU: the demo recipe with TRL's defaults (`memory_preset: none`) vs `memory_preset: auto`.

A preset never overrides a setting the recipe makes explicit, and the demo recipe sets its batch size and
`max_length`, so both arms drop the recipe's memory settings (`MEMORY_KEYS`): one trains with TRL's defaults for
them, the other lets `memory_preset: auto` choose. Both run the plugin through `trl sft` with samples off and the
same data and seed. Figures, as ratios auto / none: training throughput in non-padding tokens per second after the
first step (TRL's `num_tokens`, which counts attention-mask tokens or every token of a padding-free batch, between the
first and the last per-step log line; the whole-loop ratio beside it) and the peak resident memory of
the training process (the kernel's high-water mark of the largest process in the run's tree). The settings the
preset changed are recorded with the figures. Targets express "pays off": throughput >= 1.0 and peak RSS <= 1.0.

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

from bench_overhead import interleaved
from benchlib import figure, median, prepared_demo_recipe, require_success, run_trl_sft, write_result, write_yaml

# Settings a memory preset chooses; left unset in both arms so that TRL's defaults meet the preset's choices.
MEMORY_KEYS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "gradient_checkpointing",
    "optim",
    "packing",
    "padding_free",
)


def effective_batch(changes: list[dict[str, Any]]) -> tuple[int, int]:
    """Rows per optimizer step with TRL's defaults and under the preset (micro-batch x accumulation)."""
    from trl_smol import SmolSFTConfig

    defaults = SmolSFTConfig.__dataclass_fields__
    stock = {key: int(defaults[key].default) for key in ("per_device_train_batch_size", "gradient_accumulation_steps")}
    preset = dict(stock)
    for row in changes:
        if row["setting"] in preset and row["status"] == "changed":
            preset[row["setting"]] = int(row["value"])
    return (
        stock["per_device_train_batch_size"] * stock["gradient_accumulation_steps"],
        preset["per_device_train_batch_size"] * preset["gradient_accumulation_steps"],
    )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="presets.json", help="Where to write the JSON result.")
    parser.add_argument("--rounds", type=int, default=1, help="Pairs of runs (none + auto).")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=3,
        help="Optimizer steps of the `auto` run; the `none` run takes as many steps as it needs to train on the same "
        "rows (TRL's default batch is smaller than the preset's effective batch).",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-presets-") as scratch:
        workdir = Path(scratch)
        common = {"max_steps": args.max_steps, "logging_steps": 1, "report_to": "none", "disable_tqdm": True}
        base = prepared_demo_recipe(workdir, sample_prompts=None, **common, **dict.fromkeys(MEMORY_KEYS))
        auto_recipe = write_yaml(
            {**base, "memory_preset": "auto", "output_dir": str(workdir / "auto")}, workdir / "a.yaml"
        )
        changes = planned_changes(auto_recipe)
        # Same rows in both arms: TRL's defaults take more, smaller optimizer steps over them.
        stock_batch, preset_batch = effective_batch(changes)
        none_steps = max(2, round(args.max_steps * preset_batch / stock_batch))
        none = {**base, "memory_preset": "none", "max_steps": none_steps, "output_dir": str(workdir / "none")}
        recipes = {"none": write_yaml(none, workdir / "n.yaml"), "auto": auto_recipe}
        runs = {"none": [], "auto": []}
        for index, preset in enumerate(interleaved(args.rounds, ("none", "auto"))):
            label = f"memory_preset={preset} #{index // 2 + 1}"
            runs[preset].append(run_trl_sft(recipes[preset], plugin=True, label=label, cwd=workdir))
        require_success(runs["none"] + runs["auto"])

    if any(run.steady_tokens_per_second is None for run in runs["none"] + runs["auto"]):
        raise SystemExit("A run logged fewer than two training steps: use --max-steps 2 or more.")
    # After the first step: TRL's defaults (batch 8) pay a first step several times slower than the next ones, which
    # a short run would count as if it recurred; the whole-loop ratio is reported beside it.
    tps = {p: median([run.steady_tokens_per_second for run in preset_runs]) for p, preset_runs in runs.items()}
    loop = {p: median([run.tokens_per_second for run in preset_runs]) for p, preset_runs in runs.items()}
    rss = {preset: median([run.max_rss_bytes for run in preset_runs]) for preset, preset_runs in runs.items()}
    changed = ", ".join(f"{row['setting']}={row['value']}" for row in changes if row["status"] == "changed")
    figures = [
        figure(
            "non-padding tokens/s after the first step, auto / none",
            tps["auto"] / tps["none"],
            ">= 1.0",
            note=f"auto: {changed}; the same {args.max_steps * preset_batch} rows in each arm "
            f"({args.max_steps} steps auto, {none_steps} steps none)",
        ),
        figure(
            "non-padding tokens/s, whole loop, auto / none", loop["auto"] / loop["none"], note="first step included"
        ),
        figure("peak RSS, auto / none", rss["auto"] / rss["none"], "<= 1.0"),
        figure("peak RSS with memory_preset none", rss["none"] / 2**20, unit="MiB"),
        figure("peak RSS with memory_preset auto", rss["auto"] / 2**20, unit="MiB"),
    ]
    details = {
        "max_steps": {"auto": args.max_steps, "none": none_steps},
        "rounds": args.rounds,
        "preset_rows": changes,
        "runs": {preset: [run.summary() for run in preset_runs] for preset, preset_runs in runs.items()},
    }
    write_result(args.out, "presets", figures, details, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
