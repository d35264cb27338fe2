"""`trl-smol estimate`: the memory breakdown of a hypothetical run, without loading anything but config.json.

```bash
trl-smol estimate --model HuggingFaceTB/SmolLM3-3B-Base --method qlora --max-length 4096
trl-smol estimate --model ./my-checkpoint --method full --batch-size 2 --optim adamw_8bit --budget-gib 40
trl-smol estimate --model trl-smol/SmolLM3-demo-135M --method lora --device cpu --dtype float32 --json
```
"""

from __future__ import annotations

import argparse
import json

from ..memory import GIB, METHODS, ModelShapeError, breakdown_table, estimate_memory
from .arguments import one_line_errors, positive_float

# Flags that stand for recipe keys: read as text and checked by the rules `trl sft` checks the key with
# (trl_smol/features/values.py), so that `--optim adamw_nonsense` fails as `optim: adamw_nonsense` does.
RECIPE_FLAGS = {
    "max_length": "max_length",
    "batch_size": "per_device_train_batch_size",
    "optim": "optim",
    "lora_r": "lora_r",
    "lora_dropout": "lora_dropout",
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM3-3B-Base", help="Hub id, local path or known id.")
    parser.add_argument("--method", choices=METHODS, default="qlora")
    parser.add_argument("--max-length", default="2048", help="Tokens per sequence (`max_length`).")
    parser.add_argument("--batch-size", default="1", help="per_device_train_batch_size.")
    parser.add_argument(
        "--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True, help="Default: on."
    )
    parser.add_argument("--optim", default=None, help="Default: paged_adamw_8bit for qlora, else adamw_torch_fused.")
    parser.add_argument("--lora-r", default="16", help="LoRA rank (`lora_r`).")
    parser.add_argument("--lora-dropout", default="0", help="From 0 up to (not including) 1 (`lora_dropout`).")
    parser.add_argument("--dtype", default="bfloat16", help="Compute dtype: bfloat16, float16 or float32.")
    parser.add_argument("--weights-dtype", default=None, help="Load dtype of the weights (default: --dtype).")
    parser.add_argument("--device", choices=("cuda", "mps", "cpu"), default="cuda")
    parser.add_argument("--budget-gib", type=positive_float, default=None, help="Device memory to compare against.")
    parser.add_argument("--json", action="store_true", help="Print the estimate as JSON instead of a table.")


def recipe_values(args: argparse.Namespace) -> dict:
    """The flags that stand for recipe keys, converted and checked as `trl sft` checks the keys (raises
    `RecipeValueError`)."""
    from ..features.values import trl_rules

    rules = trl_rules()
    values = {
        key: rules[key].from_text(key, getattr(args, flag)) for flag, key in RECIPE_FLAGS.items() if flag != "optim"
    }
    values["optim"] = args.optim or ("paged_adamw_8bit" if args.method == "qlora" else "adamw_torch_fused")
    rules["optim"].check("optim", values["optim"])
    return values


@one_line_errors("estimate")
def run(args: argparse.Namespace) -> int:
    from ..features.values import RecipeValueError

    try:
        values = recipe_values(args)
    except RecipeValueError as error:
        print(f"trl-smol estimate: {error}")
        return 2
    try:
        estimate = estimate_memory(
            args.model,
            method=args.method,
            max_length=values["max_length"],
            per_device_train_batch_size=values["per_device_train_batch_size"],
            gradient_checkpointing=args.gradient_checkpointing,
            optim=values["optim"],
            lora_r=values["lora_r"],
            lora_dropout=values["lora_dropout"],
            dtype=args.dtype,
            weights_dtype=args.weights_dtype,
            device=args.device,
        )
    except (ModelShapeError, ValueError) as error:
        print(f"trl-smol estimate: {error}")
        return 2
    budget = int(args.budget_gib * GIB) if args.budget_gib else None
    if args.json:
        payload = {
            "total_bytes": estimate.total_bytes,
            "breakdown": estimate.breakdown,
            "settings": estimate.settings,
            "notes": estimate.notes,
        }
        if budget:
            payload["budget_bytes"] = budget
            payload["fits"] = estimate.total_bytes <= budget
        print(json.dumps(payload, indent=2))
        return 0
    from rich.console import Console

    settings = estimate.settings
    title = (
        f"{settings['model']}: {settings['method']}, {settings['per_device_train_batch_size']} x "
        f"{settings['max_length']} tokens, {settings['optim']}, {settings['dtype']} on {args.device}"
    )
    console = Console()
    console.print(breakdown_table(estimate, title=title, budget=budget))
    for note in estimate.notes:
        console.print(f"note: {note}")
    if budget and estimate.total_bytes > budget:
        console.print(f"[red]does not fit in {budget / GIB:.1f} GiB[/red]")
        return 1
    return 0
