"""Sample generation overhead: the demo recipe as shipped, with its sample settings, vs the same run without samples.

Both arms run the plugin on the whole demo recipe (its `max_steps`, `sample_every_n_steps`, `sample_max_new_tokens`
and prompt file); the second only drops `sample_prompts` (and `sample_checks`, which score them). The time compared
is what a user waits for `train()`: transformers' `train_runtime` (which covers the baseline pass at start and the
passes during training) plus the `on_train_end` callbacks (the final pass), timed from the final metrics line to
"Training completed.". Runs alternate when `--rounds` > 1 and medians are compared. Target: with / without - 1 <= 5%.

`--rounds 0` (what `run_all.py` uses, to fit the suite in 20 minutes on 2 cores) makes one run with samples and takes
"without" as that run minus its sample passes, as the callback times them (`samples/seconds`). On 2 idle cores the two
ways gave 6.0% (passes timed) and 4.8% (two runs): timing the passes is the stricter measure, and the difference of two
4-minute runs is itself a few percent noisy.

`--passes N` measures instead what makes a pass cheap, in one process on the demo model with the recipe's LoRA and
prompts: one pass with `fast_lora` (adapters that add zero skipped, the others merged into copies of the weights),
`reuse_prefixes` (prompts prefilled without padding, a shared system prompt once), both, or neither (`plain`), in N
rounds of rotating order, at step 0 (every `lora_B` zero) and with non-zero adapters (`lora_B` random, as after
training); the texts must be the same as plain.

`--heldout N` measures `sample_budget` with a held-out prompt set instead of the demo's four prompts (benchmark
`sample_budget`): N demo questions that are not in the training rows (`trl_smol.demo.data.heldout_prompts`, half in
think mode), each with the checks the demo's own prompt of its mode carries (and the recipe's `sample_checks`), in
batches of `per_device_eval_batch_size` (8 unless `--batch-size`), at the recipe's `max_steps` and
`sample_max_new_tokens`, with `sample_budget` `--budget` (0.05) and a pass every `--every` steps (10, so that passes
fall between the first and the last step). One run: the passes before the last step (the start pass and the periodic
ones, each the leading batches that fit) as a share of the training time without any pass (target: <= the budget),
and the final pass of every prompt, outside the budget, as a share too (no target). `details.pass_rates` holds, per
step, the prompts generated, the pass rate, each check, the stopped share and the mean new tokens read back from
`samples.jsonl`.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_samples.py --out samples.json
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_samples.py --passes 3 --out sample_passes.json
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_samples.py --rounds 0 --heldout 256 --out budget.json
```
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from bench_overhead import interleaved
from benchlib import (
    REPO_ROOT,
    demo_model_path,
    figure,
    load_recipe,
    median,
    prepared_demo_recipe,
    require_success,
    run_trl_sft,
    write_result,
    write_yaml,
)

TARGET = "<= 0.05"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="samples.json", help="Where to write the JSON result.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Pairs of runs (with + without samples); 0: one run with samples, minus its timed sample passes.",
    )
    parser.add_argument("--max-steps", type=int, help="Override the recipe's max_steps (default: as shipped).")
    parser.add_argument("--passes", type=int, default=0, help="Compare N rounds of single passes instead (see above).")
    parser.add_argument(
        "--heldout",
        type=int,
        default=0,
        help="Sample N held-out demo questions (with the demo prompts' checks) instead of the recipe's prompts.",
    )
    parser.add_argument("--budget", type=float, default=0.05, help="With --heldout: the run's sample_budget.")
    parser.add_argument("--every", type=int, default=10, help="With --heldout: the run's sample_every_n_steps.")
    parser.add_argument("--max-new-tokens", type=int, help="Override the recipe's sample_max_new_tokens.")
    parser.add_argument(
        "--batch-size", type=int, help="Prompts per generate call (per_device_eval_batch_size; default 8)."
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.passes:
        figures, details = compare_passes(args.passes)
        write_result(args.out, "sample_passes", figures, details, started)
        return 0
    if args.heldout and args.rounds:
        parser.error("--heldout measures one run with its sample passes timed: use --rounds 0")
    shipped = load_recipe()

    with tempfile.TemporaryDirectory(prefix="bench-samples-") as scratch:
        workdir = Path(scratch)
        common = {"report_to": "none", "disable_tqdm": True}
        if args.max_steps:
            common["max_steps"] = args.max_steps
        if args.max_new_tokens:
            common["sample_max_new_tokens"] = args.max_new_tokens
        if args.batch_size:
            common["per_device_eval_batch_size"] = args.batch_size
        with_samples = prepared_demo_recipe(workdir, **common)
        if not with_samples.get("sample_prompts"):
            raise SystemExit("The demo recipe sets no sample_prompts: there is nothing to measure.")
        if args.heldout:
            demo_prompts = Path(with_samples["sample_prompts"])
            with_samples["sample_prompts"] = str(heldout_file(args.heldout, demo_prompts, workdir / "heldout.jsonl"))
            with_samples.update(sample_budget=args.budget, sample_every_n_steps=args.every)
        without = {key: value for key, value in with_samples.items() if key not in ("sample_prompts", "sample_checks")}
        recipes = {
            "with samples": write_yaml({**with_samples, "output_dir": str(workdir / "with")}, workdir / "with.yaml"),
            "without samples": write_yaml({**without, "output_dir": str(workdir / "without")}, workdir / "no.yaml"),
        }
        runs = {arm: [] for arm in recipes}
        rates: dict[str, list] = {arm: [] for arm in recipes}  # per run: pass rates by step, from samples.jsonl
        order = interleaved(args.rounds, ("without samples", "with samples")) if args.rounds else ["with samples"]
        for index, arm in enumerate(order):
            label = f"{arm} #{index // 2 + 1}"
            runs[arm].append(run_trl_sft(recipes[arm], plugin=True, label=label, cwd=workdir))
            rates[arm].append(pass_rates(workdir / "runs" / run_folder(label) / "samples.jsonl"))
        require_success([run for arm_runs in runs.values() for run in arm_runs])
    if not all(run.sample_passes for run in runs["with samples"]):
        raise SystemExit("A run with samples had no timed pass: did the samples table title change (benchlib)?")
    steps = with_samples.get("max_steps") or shipped.get("max_steps")
    if args.heldout:
        run, run_rates = runs["with samples"][0], rates["with samples"][0]
        figures, details = budget_figures(run, run_rates, with_samples, steps, args.heldout)
        write_result(args.out, "sample_budget", figures, details, started)
        return 0

    with_seconds = median([run.train_seconds for run in runs["with samples"]])
    reported = median([sum(seconds for _, seconds in run.sample_passes) for run in runs["with samples"]])
    if runs["without samples"]:
        without_seconds = median([run.train_seconds for run in runs["without samples"]])
        how = f"median of {args.rounds} runs each way, interleaved"
    else:
        without_seconds = with_seconds - reported
        how = "one run; without = that run minus its sample passes (callback clock)"
    settings = (
        f"{steps} steps, every {with_samples.get('sample_every_n_steps')} steps, "
        f"{with_samples.get('sample_max_new_tokens')} new tokens"
    )
    figures = [
        figure(
            "train time with / without samples - 1",
            with_seconds / without_seconds - 1,
            TARGET,
            note=f"{settings}; {how}",
        )
    ]
    if runs["without samples"]:  # with one run, the passes' own share is the figure above
        figures.append(
            figure(
                "sample passes' own time / train time without",
                reported / without_seconds,
                TARGET,
                note="as the callback reports it (samples/seconds)",
            )
        )
    details = {
        "settings": settings,
        "passes": runs["with samples"][0].sample_passes,
        "with_seconds": with_seconds,
        "without_seconds": without_seconds,
        "pass_rates": {arm: arm_rates for arm, arm_rates in rates.items() if arm_rates},
        "runs": {arm: [run.summary() for run in arm_runs] for arm, arm_runs in runs.items()},
    }
    write_result(args.out, "samples", figures, details, started)
    return 0


def budget_figures(run, rates: dict[int, dict], recipe: dict, steps: int, count: int) -> tuple[list[dict], dict]:
    """The held-out run's figures: the passes before the last step (what `sample_budget` bounds) and the final pass,
    each as a share of the training time without any pass (the callback's clock: `samples/seconds`)."""
    passes = dict(run.sample_passes)
    training = run.train_seconds - sum(passes.values())
    budgeted = sum(seconds for step, seconds in passes.items() if step < steps)
    final = passes.get(steps)
    prompts = {step: rates[step]["samples"] for step in sorted(rates)}
    batch = recipe.get("per_device_eval_batch_size", 8)
    settings = (
        f"{count} held-out prompts in batches of {batch}, {steps} steps, a pass every "
        f"{recipe['sample_every_n_steps']} steps, {recipe['sample_max_new_tokens']} new tokens, sample_budget "
        f"{recipe['sample_budget']}; checks: {heldout_checks({'with samples': [rates]})}"
    )
    generated = ", ".join(f"step {step}: {count}" for step, count in prompts.items())
    figures = [
        figure(
            "passes before the last step / training time (sample_budget)",
            budgeted / training,
            f"<= {recipe['sample_budget']}",
            note=f"{settings}; prompts generated per pass: {generated}; one run, passes timed by the callback",
        ),
        figure(
            "final pass of every held-out prompt / training time",
            (final or 0.0) / training,
            None,
            note=f"outside the budget: {prompts.get(steps, 0)} prompts at step {steps}",
        ),
    ]
    details = {
        "settings": settings,
        "passes": run.sample_passes,
        "training_seconds": training,
        "budgeted_seconds": budgeted,
        "final_seconds": final,
        "pass_rates": rates,
        "runs": {"with samples": [run.summary()]},
    }
    return figures, details


def heldout_file(count: int, demo_prompts: Path, path: Path) -> Path:
    """`count` demo questions that are not in the training rows (`heldout_prompts`, half of them think), as a prompt
    file; each carries the checks of the demo's own prompt of the same mode, as the recipe samples them. The first
    `count` of a larger set are the same questions."""
    from trl_smol.demo.data import heldout_prompts

    checks = {}
    for line in demo_prompts.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if isinstance(row, dict) and row.get("checks"):
            thinking = bool((row.get("chat_template_kwargs") or {}).get("enable_thinking", True))
            checks.setdefault(thinking, row["checks"])
    with path.open("w", encoding="utf-8") as file:
        for prompt in heldout_prompts(count):
            row = {"messages": prompt["messages"], "chat_template_kwargs": prompt["chat_template_kwargs"]}
            mode_checks = checks.get(prompt["chat_template_kwargs"]["enable_thinking"])
            file.write(json.dumps({**row, **({"checks": mode_checks} if mode_checks else {})}, ensure_ascii=False))
            file.write("\n")
    return path


def run_folder(label: str) -> str:
    """The folder `run_trl_sft` gives a run under `runs/`."""
    return re.sub(r"[^\w.-]+", "-", label).strip("-")


def pass_rates(path: Path) -> dict[int, dict]:
    """Per pass of a run's `samples.jsonl` (`{}` without one): samples, pass rate, each check, stopped share, mean new
    tokens, as the trackers, the card and `trl-smol samples` have them."""
    from trl_smol.samples.outputs import read_samples
    from trl_smol.samples.scores import pass_scores

    rates = {}
    for step, rows in (read_samples(path).passes if path.exists() else {}).items():
        scores = pass_scores(rows)
        rates[step] = {
            "samples": scores.samples,
            "pass_rate": scores.pass_rate,
            "checks": scores.checks,
            "stopped": scores.stopped,
            "mean_new_tokens": scores.mean_new_tokens,
        }
    return rates


def heldout_checks(rates: dict[str, list]) -> str:
    """The checks the held-out samples were scored with, as the rows of the run with samples name them."""
    names = {name for run in rates["with samples"] for step in run.values() for name in step["checks"]}
    return ", ".join(sorted(names)) or "none"


ARMS = {  # SampleGenerator settings of each arm of `--passes`
    "plain": {"fast_lora": False, "reuse_prefixes": False},
    "fast_lora": {"fast_lora": True, "reuse_prefixes": False},
    "reuse_prefixes": {"fast_lora": False, "reuse_prefixes": True},
    "both (default)": {"fast_lora": True, "reuse_prefixes": True},
}


def compare_passes(rounds: int) -> tuple[list[dict], dict]:
    """Seconds of one pass in each arm of `ARMS`, in this process: an untimed round, then `rounds` rounds, each in a
    rotated order. At step 0 (every `lora_B` zero) and with `lora_B` random, as after training."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_smol.samples import SampleGenerator, load_prompts

    recipe = load_recipe()
    path = demo_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    lora = LoraConfig(
        r=recipe["lora_r"],
        lora_alpha=recipe["lora_alpha"],
        lora_dropout=recipe["lora_dropout"],
        target_modules=recipe["lora_target_modules"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    checkpointing = {"use_reentrant": False}
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)  # as TRL trains it
    model.train()
    prompts = load_prompts(REPO_ROOT / recipe["sample_prompts"])
    lora_b = [parameter for name, parameter in model.named_parameters() if "lora_B" in name]
    generator = torch.Generator().manual_seed(0)
    trained = [torch.randn(parameter.shape, generator=generator) * 0.01 for parameter in lora_b]
    names = list(ARMS)
    figures, details = [], {"rounds": rounds, "threads": torch.get_num_threads()}
    for state in ("zero", "trained"):
        with torch.no_grad():
            for parameter, values in zip(lora_b, trained, strict=True):
                parameter.copy_(values if state == "trained" else torch.zeros_like(values))
        seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
        texts: dict[str, list] = {}
        for round_index in range(rounds + 1):
            for arm in names[round_index % len(names) :] + names[: round_index % len(names)]:
                sampler = SampleGenerator(prompts, max_new_tokens=recipe["sample_max_new_tokens"], **ARMS[arm])
                rows, took = sampler.generate(model, tokenizer, gradient_checkpointing_kwargs=checkpointing)
                texts[arm] = [(row["completion"], row["thinking"], row["num_new_tokens"]) for row in rows]
                if round_index:  # the first round warms up
                    seconds[arm].append(took)
        label = "step 0, lora_B zero" if state == "zero" else "lora_B random"
        for arm in names[1:]:
            same = texts[arm] == texts["plain"]
            ratio = median(seconds[arm]) / median(seconds["plain"])
            figures.append(figure(f"pass {arm} / plain, {label}", ratio, "< 1", note=f"same text as plain: {same}"))
        details[state] = {
            "seconds": seconds,
            "same_text": {arm: texts[arm] == texts["plain"] for arm in names[1:]},
            "new_tokens": [text[2] for text in texts["plain"]],
        }
    return figures, details


if __name__ == "__main__":
    raise SystemExit(main())
