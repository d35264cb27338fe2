"""Padded vs padding-free vs bfd-packed batches on a SmolLM3-3B-shaped model: non-padding tokens/s of train steps.

The same rows (variable lengths, seeded) are trained in three batch forms built by TRL's own collator and packer:

- `padded`: batches of `--batch-rows` rows padded to the longest (TRL's default collator),
- `padding_free`: the same batches with every row in one sequence, `position_ids` marking where each one starts,
- `bfd`: rows packed into `--max-length` bins by TRL's best-fit-decreasing `pack_dataset`, then collated padding-free.

Each form runs forward + backward + optimizer step over all rows (LoRA r=16 on all linear layers, bf16 weights, the
attention kernel named by `--attn`), twice, and the faster pass counts. The summed loss over all rows must agree
between forms (the same tokens are predicted), which the report checks. One JSON file is written.

```bash
python tests/benchmarks/gpu_packing.py --checkpoint /tmp/SmolLM3-3B-random --out gpu_packing.json   # on a GPU
python tests/benchmarks/gpu_packing.py --tiny --out /tmp/packing.json                             # CPU smoke run
```
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

FORMS = ("padded", "padding_free", "bfd")


def row_lengths(count: int, low: int, high: int, seed: int) -> list[int]:
    """Seeded lengths, uniform in [low, high]: a spread like chat SFT data, where padding costs the most."""
    import random

    generator = random.Random(seed)
    return [generator.randint(low, high) for _ in range(count)]


def build_batches(rows: list[dict], form: str, batch_rows: int, max_length: int, pad_token_id: int) -> list[dict]:
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    if form == "bfd":
        packed = pack_dataset(Dataset.from_list(rows), seq_length=max_length, strategy="bfd")
        collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)
        bins = [dict(row) for row in packed]
        # As many tokens per step as a padded batch of `batch_rows` holds on average.
        per_step = max(1, round(batch_rows * sum(len(r["input_ids"]) for r in rows) / len(rows) / max_length))
        return [collate(bins[i : i + per_step]) for i in range(0, len(bins), per_step)]
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=form == "padding_free")
    return [collate(rows[i : i + batch_rows]) for i in range(0, len(rows), batch_rows)]


def train_pass(model, optimizer, batches: list[dict], device: str) -> tuple[float, float, int]:
    """Seconds, summed loss (over predicted tokens) and batch cells (tokens including padding) for one pass."""
    import torch

    total_loss, cells = 0.0, 0
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for batch in batches:
        inputs = {key: value.to(device) for key, value in batch.items() if key in ("input_ids", "position_ids")}
        if "attention_mask" in batch:
            inputs["attention_mask"] = batch["attention_mask"].to(device)
        labels = batch["labels"].to(device)
        logits = model(**inputs, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total_loss += loss.item()
        cells += batch["input_ids"].numel()
    synchronize()
    return time.perf_counter() - started, total_loss, cells


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trl_smol.memory import lora_config
    from trl_smol.testing import tiny_smollm3_model, tiny_smollm3_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.tiny:
        tokenizer = tiny_smollm3_tokenizer()
        torch.manual_seed(0)
        base = tiny_smollm3_model(tokenizer, num_hidden_layers=4)
        vocab = base.config.vocab_size
    else:
        base = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=dtype)
        vocab = base.config.vocab_size
    base.config._attn_implementation = args.attn
    base.train()  # gradient checkpointing only acts in training mode
    base.gradient_checkpointing_enable()
    base.enable_input_require_grads()
    pad_token_id = base.config.pad_token_id if base.config.pad_token_id is not None else 0
    generator = torch.Generator().manual_seed(args.seed)
    lengths = row_lengths(args.rows, args.min_length, args.max_length, args.seed)
    rows = []
    for length in lengths:
        ids = torch.randint(10, vocab - 1, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": ids})
    results: dict[str, Any] = {}
    initial = None
    for form in FORMS:
        model = get_peft_model(base, lora_config(16))
        model.to(device)
        if initial is None:
            initial = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
        else:
            model.load_state_dict(initial, strict=False)  # every form starts from the same adapter weights
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        batches = build_batches(rows, form, args.batch_rows, args.max_length, pad_token_id)
        passes = [train_pass(model, optimizer, batches, device) for _ in range(args.passes)]
        seconds = min(p[0] for p in passes)
        results[form] = {
            "steps": len(batches),
            "seconds": round(seconds, 4),
            "pass_seconds": [round(p[0], 4) for p in passes],
            "tokens_per_second": sum(lengths) / seconds,
            "summed_loss": passes[0][1],
            "padding_share": 1 - sum(lengths) / passes[0][2],
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()) if device == "cuda" else None,
        }
        base = model.unload()  # the base model without adapters, for the next form
        del model, optimizer
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        print(f"{form}: {results[form]['tokens_per_second']:,.0f} non-padding tok/s", flush=True)
    losses = [results[form]["summed_loss"] for form in FORMS]
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "attn_implementation": args.attn,
        "rows": args.rows,
        "non_padding_tokens": sum(lengths),
        "lengths": f"uniform {args.min_length}..{args.max_length}, seed {args.seed}",
        "batch_rows": args.batch_rows,
        "forms": results,
        "speedup_vs_padded": {
            form: results[form]["tokens_per_second"] / results["padded"]["tokens_per_second"] for form in FORMS
        },
        "loss_relative_spread": (max(losses) - min(losses)) / abs(min(losses)),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="A SmolLM3 checkpoint (gpu_memory.build_random_checkpoint makes one).")
    parser.add_argument("--tiny", action="store_true", help="Use the tiny random SmolLM3 (a CPU smoke run).")
    parser.add_argument("--attn", default="sdpa", help="attn_implementation: sdpa, eager, flash_attention_2, ...")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-rows", type=int, default=8)
    parser.add_argument("--min-length", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gpu_packing.json")
    args = parser.parse_args(argv)
    if not args.tiny and not args.checkpoint:
        parser.error("give --checkpoint or --tiny")
    report = run(args)
    with open(args.out, "w") as file:
        json.dump(report, file, indent=2)
    print(json.dumps({k: report[k] for k in ("speedup_vs_padded", "loss_relative_spread")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
