"""Data preparation: template + tokenize + mask SmolTalk2-shaped conversations, stock TRL path vs the plugin's.

The rows are generated deterministically: SmolTalk2-shaped conversations from every split of the SFT mixture
(`smoltalk2_rows` in tests/smoltalk2_data.py: think and no_think, custom instructions) and one in five from the demo
set (`trl_smol.demo.data.demo_rows`: system prompts, multi-turn), each with the template's date pinned so both paths
render the same text. Both paths use the same tokenizer carrying the SmolLM3 template, `assistant_only_loss=True`
and `max_length=2048`, and are timed through the trainers' own `_prepare_dataset`:

- stock: `trl.SFTTrainer._prepare_dataset` (per-example `apply_chat_template` with assistant masks, labels,
  truncation);
- plugin: `SmolSFTTrainer._prepare_dataset` (validation, batched rendering and tokenization, then TRL's truncation).

The method runs on a trainer object without a model (`object.__new__` plus the attributes `_prepare_dataset` reads),
so only data preparation is timed. The outputs are checked to be identical. Figures: stock time / plugin time at
`dataset_num_proc` 1 and 2 (target >= 1.0) and the plugin's speed-up from 1 to 2 processes.

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/bench_data.py --rows 100000 --out data.json
```
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchlib import BENCH_TODAY, demo_model_path, figure, write_result

TARGET = ">= 1.0"
CHECKED_ROWS = 2000  # rows whose ids and labels are compared between the two paths


def conversation_rows(num_rows: int) -> list[dict[str, Any]]:
    """`num_rows` SmolTalk2-shaped conversations, the same on every run (see the module docstring)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the SmolTalk2-shaped row generator
    from smoltalk2_data import smoltalk2_rows

    from trl_smol.data.mixtures import SMOLTALK2_SFT_SPLITS
    from trl_smol.demo.data import demo_rows

    num_demo = num_rows // 5
    num_smoltalk = num_rows - num_demo
    per_split = -(-num_smoltalk // len(SMOLTALK2_SFT_SPLITS))
    by_split = [smoltalk2_rows(split, per_split) for split in SMOLTALK2_SFT_SPLITS]
    smoltalk = [split_rows[i] for i in range(per_split) for split_rows in by_split][:num_smoltalk]
    demo = demo_rows(num_rows=num_demo) if num_demo else []
    rows = []
    for index, row in enumerate(smoltalk):  # one demo row after every four SmolTalk2 rows
        rows.append(row)
        if index % 4 == 3 and demo:
            rows.append(demo.pop())
    rows.extend(demo)
    for row in rows:
        row.pop("source", None)
        row["chat_template_kwargs"] = {**(row.get("chat_template_kwargs") or {}), "today": BENCH_TODAY}
    return rows


def bare_trainer(trainer_class: type, tokenizer: Any, args: Any) -> Any:
    """A trainer object carrying only what `_prepare_dataset` reads (no model is loaded). The plugin's also reads its
    run plan (for the template defaults: none here, the rows carry their pinned date) and its console (quiet)."""
    from trl_smol import SmolSFTTrainer
    from trl_smol.console import RunConsole
    from trl_smol.plan import plan_run

    trainer = object.__new__(trainer_class)
    trainer._tokenizer = tokenizer
    trainer.processing_class = tokenizer
    trainer.chat_template = None
    trainer.completion_only_loss = None
    trainer._is_vision_dataset = False
    if issubclass(trainer_class, SmolSFTTrainer):
        trainer.run_plan = plan_run(args)
        trainer.run_console = RunConsole(active=False)
    return trainer


def prepare(path: str, dataset: Any, tokenizer: Any, num_proc: int | None) -> tuple[float, Any]:
    """Time one path (`"stock"` or `"plugin"`) at `num_proc` processes."""
    from trl import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    trainer_class, config_class = (SFTTrainer, SFTConfig) if path == "stock" else (SmolSFTTrainer, SmolSFTConfig)
    args = config_class(
        output_dir="bench-data",
        bf16=False,
        assistant_only_loss=True,
        max_length=2048,
        dataset_num_proc=num_proc,
        report_to="none",
    )
    trainer = bare_trainer(trainer_class, tokenizer, args)
    started = time.perf_counter()
    prepared = trainer_class._prepare_dataset(trainer, dataset, tokenizer, args, False, None, "train")
    return time.perf_counter() - started, prepared


def same_output(first: Any, second: Any, rows: int) -> bool:
    if len(first) != len(second):
        return False
    head = min(rows, len(first))
    a, b = first.select(range(head)), second.select(range(head))
    return a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data.json", help="Where to write the JSON result.")
    parser.add_argument("--rows", type=int, default=100_000, help="Conversations (the target is about 100k).")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="dataset_num_proc values.")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import datasets
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_smol.templating import apply_smollm3_template

    datasets.disable_caching()  # every run tokenizes from scratch
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(demo_model_path())
    apply_smollm3_template(tokenizer)
    dataset = Dataset.from_list(conversation_rows(args.rows))
    print(f"{len(dataset)} conversations", flush=True)

    timings: dict[str, dict[int, float]] = {"stock": {}, "plugin": {}}
    identical = True
    for index, num_proc in enumerate(args.num_proc):
        outputs = {}
        for path in ("stock", "plugin") if index % 2 == 0 else ("plugin", "stock"):  # alternate who goes first
            seconds, outputs[path] = prepare(path, dataset, tokenizer, num_proc)
            timings[path][num_proc] = seconds
            print(f"  {path} path, dataset_num_proc={num_proc}: {seconds:.1f} s", flush=True)
        identical = identical and same_output(outputs["stock"], outputs["plugin"], CHECKED_ROWS)

    figures = []
    for num_proc in args.num_proc:
        ratio = timings["stock"][num_proc] / timings["plugin"][num_proc]
        figures.append(
            figure(
                f"data prep speed, plugin / stock, dataset_num_proc={num_proc}",
                ratio,
                TARGET,
                note=f"{len(dataset)} conversations; stock time / plugin time",
            )
        )
    if len(args.num_proc) > 1:
        low, high = min(args.num_proc), max(args.num_proc)
        speedup = timings["plugin"][low] / timings["plugin"][high]
        figures.append(figure(f"plugin speed-up, dataset_num_proc {low} -> {high}", speedup, "> 1.0"))
    for path in ("stock", "plugin"):
        for num_proc, seconds in timings[path].items():
            figures.append(figure(f"{path} path, dataset_num_proc={num_proc}", len(dataset) / seconds, unit="rows/s"))
    details = {
        "rows": len(dataset),
        "identical_ids_and_labels": identical,
        "checked_rows": min(CHECKED_ROWS, len(dataset)),
        "seconds": {path: {str(k): v for k, v in values.items()} for path, values in timings.items()},
    }
    write_result(args.out, "data", figures, details, started)
    if not identical:
        print("warning: the stock and plugin paths produced different ids or labels", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
