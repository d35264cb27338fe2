"""Demo quality: the demo recipe as shipped, through the stock `trl sft`, learns the demo's answer format and the
behaviour generalises to questions it never saw.

The command is the README's, `trl sft --config recipes/smollm3_demo.yaml` from the repository root (its 30 steps, its
sample passes), with only `--output_dir` pointed at a scratch folder and trackio's store there too. The result is then
loaded back as a user would, without the plugin (`TRL_SMOL_DISABLE=1`: `AutoPeftModelForCausalLM` and the saved
tokenizer), and answers the 20 held-out prompts of `trl_smol.demo.data.heldout_prompts` greedily, 40 new tokens,
with the adapter on and, for the baseline, off (the untrained base model, same tokenizer). Targets: at least 80% of the
held-out prompts answered in the format after training (`has_demo_behaviour`), at most 10% before.

This was the acceptance check of the slow demo test until CI had to fit in 15 minutes on 2 cores; the test now runs
the recipe end to end for a few steps (tests/test_demo.py) and the quality is measured here.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_demo_quality.py --out demo_quality.json         # 4.7 min on 2 cores
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_demo_quality.py --max-steps 2 --out quick.json  # checks the script
```
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchlib import (
    DEMO_RECIPE,
    REPO_ROOT,
    bench_env,
    demo_model_path,
    figure,
    load_recipe,
    parse_log_line,
    trl_command,
    write_result,
)

TRAINED_TARGET = ">= 0.8"
BASE_TARGET = "<= 0.1"
MAX_NEW_TOKENS = 40

# Runs in its own process without the plugin: prints one JSON line with the checker's verdict and the replies.
EVALUATE = textwrap.dedent(
    """
    import json, sys
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer
    from trl_smol.demo.data import has_demo_behaviour, heldout_prompts

    output_dir, max_new_tokens = sys.argv[1], int(sys.argv[2])
    model = AutoPeftModelForCausalLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    tokenizer.padding_side = "left"
    prompts = heldout_prompts()
    texts = [
        tokenizer.apply_chat_template(m["messages"], tokenize=False, add_generation_prompt=True, **kwargs)
        for m in prompts
        for kwargs in [m["chat_template_kwargs"]]
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def replies():
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    trained = replies()
    with model.disable_adapter():
        base = replies()
    print(json.dumps({
        "trained": [has_demo_behaviour(r) for r in trained], "base": [has_demo_behaviour(r) for r in base],
        "trained_replies": trained, "base_replies": base,
    }))
    """
)


def train(output_dir: Path, trackio_dir: Path, max_steps: int | None) -> dict:
    """`trl sft --config recipes/smollm3_demo.yaml` from the repository root, as the README runs it."""
    command = [
        *trl_command(),
        "sft",
        "--config",
        str(DEMO_RECIPE.relative_to(REPO_ROOT)),
        "--output_dir",
        str(output_dir),
    ]
    if max_steps:  # a cut-down run, to check the script: samples before and after, as the recipe does
        command += ["--max_steps", str(max_steps), "--sample_every_n_steps", str(max_steps), "--logging_steps", "1"]
    env = {**bench_env(plugin=True), "TRACKIO_DIR": str(trackio_dir)}
    print(f"  {' '.join(command)}", flush=True)
    started = time.perf_counter()
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, errors="replace")
    seconds = time.perf_counter() - started
    log = run.stdout + run.stderr
    if run.returncode != 0:
        print(log[-6000:], file=sys.stderr, flush=True)
        raise SystemExit(f"`trl sft` failed with exit code {run.returncode} (its output is above)")
    metrics = [parsed for line in run.stdout.splitlines() if (parsed := parse_log_line(line)) is not None]
    losses = [entry["loss"] for entry in metrics if "loss" in entry]
    runtime = next((entry["train_runtime"] for entry in metrics if "train_runtime" in entry), None)
    print(f"  trained: wall {seconds:.0f} s, train_runtime {runtime} s, losses {losses}", flush=True)
    details = {"command": command[1:], "wall_seconds": round(seconds, 1), "train_runtime": runtime, "losses": losses}
    return details


def evaluate(output_dir: Path) -> dict:
    env = bench_env(plugin=False)  # TRL_SMOL_DISABLE=1: loaded back as a user without the plugin would
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", EVALUATE, str(output_dir), str(MAX_NEW_TOKENS)],
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if run.returncode != 0:
        print(run.stderr[-4000:], file=sys.stderr, flush=True)
        raise SystemExit(f"the evaluation failed with exit code {run.returncode} (its output is above)")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_quality.json", help="Where to write the JSON result.")
    parser.add_argument("--max-steps", type=int, help="Override the recipe's max_steps (default: as shipped).")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"demo model: {demo_model_path()}", flush=True)  # built once (~35 s) if the cache lacks it
    steps = args.max_steps or load_recipe()["max_steps"]

    with tempfile.TemporaryDirectory(prefix="bench-demo-quality-") as scratch:
        output_dir = Path(scratch) / "smollm3-demo"
        training = train(output_dir, Path(scratch) / "trackio", args.max_steps)
        result = evaluate(output_dir)

    trained = sum(result["trained"]) / len(result["trained"])
    base = sum(result["base"]) / len(result["base"])
    how = (
        f"{len(result['trained'])} held-out prompts, greedy, {MAX_NEW_TOKENS} new tokens, loaded back without the "
        f"plugin; {steps} steps of recipes/smollm3_demo.yaml through `trl sft`"
        + ("" if args.max_steps is None else " (cut down: not the reference figure)")
    )
    figures = [
        figure("held-out prompts in the demo format after training", trained, TRAINED_TARGET, note=how),
        figure(
            "held-out prompts in the demo format, base model", base, BASE_TARGET, note="the same prompts, adapter off"
        ),
    ]
    print(f"held-out prompts in the trained format: {trained:.0%} after training, {base:.0%} before", flush=True)
    details = {"max_steps": steps, "training": training, "evaluation": result}
    write_result(args.out, "demo_quality", figures, details, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
