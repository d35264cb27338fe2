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
from .arguments import positive_float, positive_int, probability


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM3-3B-Base", help="Hub id, local path or known id.")
    parser.add_argument("--method", choices=METHODS, default="qlora")
    parser.add_argument("--max-length", type=positive_int, default=2048, help="Tokens per sequence.")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="per_device_train_batch_size.")
    parser.add_argument(
        "--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True, help="Default: on."
    )
    parser.add_argument("--optim", default=None, help="Default: paged_adamw_8bit for qlora, else adamw_torch_fused.")
    parser.add_argument("--lora-r", type=positive_int, default=16)
    parser.add_argument("--lora-dropout", type=probability, default=0.0, help="From 0 up to (not including) 1.")
    parser.add_argument("--dtype", default="bfloat16", help="Compute dtype: bfloat16, float16 or float32.")
    parser.add_argument("--weights-dtype", default=None, help="Load dtype of the weights (default: --dtype).")
    parser.add_argument("--device", choices=("cuda", "mps", "cpu"), default="cuda")
    parser.add_argument("--budget-gib", type=positive_float, default=None, help="Device memory to compare against.")
    parser.add_argument("--json", action="store_true", help="Print the estimate as JSON instead of a table.")


def run(args: argparse.Namespace) -> int:
    optim = args.optim or ("paged_adamw_8bit" if args.method == "qlora" else "adamw_torch_fused")
    try:
        estimate = estimate_memory(
            args.model,
            method=args.method,
            max_length=args.max_length,
            per_device_train_batch_size=args.batch_size,
            gradient_checkpointing=args.gradient_checkpointing,
            optim=optim,
            lora_r=args.lora_r,
            lora_dropout=args.lora_dropout,
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
