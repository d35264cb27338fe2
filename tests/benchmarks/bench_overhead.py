"""Plugin overhead: the demo recipe through stock `trl sft` (plugin off) and through the plugin, samples off.

Both arms train the same model (`trl-smol/SmolLM3-demo-135M`), data, template and seed; the only difference is
`TRL_SMOL_DISABLE=1`. Stock TRL gets the SmolLM3 template through its own `chat_template_path` and `<|im_end|>` as
`eos_token`, which is what the plugin sets, and the data pin the template's date so both render identical text (the
logged losses are compared to show that both arms did the same work). Runs alternate (A B, B A, A B, ...) so that
drift in the machine's load hits both arms alike. The figure is the ratio of the medians of training tokens per second
after the first step: TRL's cumulative `num_tokens` between the first and the last per-step log line, over the time
between them (the output is unbuffered), which leaves out start-up, data preparation and the first step's one-time
costs that make short runs noisy. Target: plugin / stock >= 0.98. The whole-loop ratio (`num_tokens` over
transformers' `train_runtime`) is reported beside it.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_overhead.py --rounds 3 --max-steps 10 --out overhead.json
```
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

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

TARGET = ">= 0.98"


def interleaved(rounds: int, arms: tuple[str, str]) -> list[str]:
    """Run order: A B, B A, A B, ... (each round swaps which arm goes first).

    ```python
    >>> interleaved(3, ("stock", "plugin"))
    ['stock', 'plugin', 'plugin', 'stock', 'stock', 'plugin']
    ```
    """
    order = []
    for index in range(rounds):
        order.extend(arms if index % 2 == 0 else arms[::-1])
    return order


def max_loss_difference(first: list[float], second: list[float]) -> float | None:
    if not first or len(first) != len(second):
        return None
    return max(abs(a - b) for a, b in zip(first, second, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="overhead.json", help="Where to write the JSON result.")
    parser.add_argument("--rounds", type=int, default=3, help="Pairs of runs (stock + plugin).")
    parser.add_argument("--max-steps", type=int, default=10, help="Optimizer steps per run (the demo recipe says 30).")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        workdir = Path(scratch)
        # Losses logged every step: the two arms must log the same losses (same data, template and seed).
        common = {"max_steps": args.max_steps, "logging_steps": 1, "report_to": "none", "disable_tqdm": True}
        plugin = prepared_demo_recipe(workdir, sample_prompts=None, **common)
        stock = {**stock_recipe(plugin), "output_dir": str(workdir / "stock")}
        recipes = {
            "stock": write_yaml(stock, workdir / "stock.yaml"),
            "plugin": write_yaml({**plugin, "output_dir": str(workdir / "plugin")}, workdir / "plugin.yaml"),
        }
        runs = {"stock": [], "plugin": []}
        for index, arm in enumerate(interleaved(args.rounds, ("stock", "plugin"))):
            label = f"{arm} #{index // 2 + 1}"
            runs[arm].append(run_trl_sft(recipes[arm], plugin=arm == "plugin", label=label, cwd=workdir))
        require_success(runs["stock"] + runs["plugin"])

    if any(run.steady_tokens_per_second is None for run in runs["stock"] + runs["plugin"]):
        raise SystemExit("A run logged fewer than two training steps: use --max-steps 2 or more.")
    stock_tps = median([run.steady_tokens_per_second for run in runs["stock"]])
    plugin_tps = median([run.steady_tokens_per_second for run in runs["plugin"]])
    stock_loop = median([run.tokens_per_second for run in runs["stock"]])
    plugin_loop = median([run.tokens_per_second for run in runs["plugin"]])
    loss_difference = max_loss_difference(runs["stock"][0].losses, runs["plugin"][0].losses)
    same_tokens = runs["stock"][0].num_tokens == runs["plugin"][0].num_tokens
    note = f"median of {args.rounds} runs each, {args.max_steps} steps of the demo recipe, interleaved"
    figures = [
        figure("training tokens/s after the first step, plugin / stock", plugin_tps / stock_tps, TARGET, note=note),
        figure("whole training loop tokens/s, plugin / stock", plugin_loop / stock_loop, note="first step included"),
        figure("stock training tokens/s after the first step (median)", stock_tps, unit="tok/s"),
        figure("plugin training tokens/s after the first step (median)", plugin_tps, unit="tok/s"),
    ]
    details = {
        "max_steps": args.max_steps,
        "rounds": args.rounds,
        "same_num_tokens": same_tokens,
        "max_loss_difference": loss_difference,
        "runs": {arm: [run.summary() for run in arm_runs] for arm, arm_runs in runs.items()},
    }
    write_result(args.out, "overhead", figures, details, started)
    if not same_tokens:
        print("warning: the two arms trained on different token counts; the comparison is not like for like")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
