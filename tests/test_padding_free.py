"""Padding-free batches under the plugin: TRL still truncates, the loss is the padded run's, and mistakes are errors.

`smol_padding_free` (turned on by every memory preset) swaps TRL's padded collation for TRL's own padding-free one
after TRL has prepared the dataset, so rows are truncated to `max_length` exactly as in a padded run. The tiny
SmolLM3 here has 4 layers, so layer 3 is a NoPE layer, which only the packed-sequence mask keeps apart. (That
assistant-only labels survive padding-free collation is shown in test_packed_batches.py.)
"""

import pytest
import torch
from datasets import Dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.config import UserSettings
from trl_smol.data.padding_free import (
    BoundedRowsCollator,
    PackedBatchError,
    guard_packed_batches,
    padding_free_collator,
)
from trl_smol.features import FeatureError, Source
from trl_smol.testing import save_tiny_smollm3, tiny_smollm3_model, tiny_smollm3_tokenizer

ROWS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Name a colour of the sea, please."}, {"role": "assistant", "content": "Blue."}],
    [{"role": "user", "content": "And the sky at night?"}, {"role": "assistant", "content": "Black, with stars."}],
]
MAX_LENGTH = 40


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-smollm3-nope")
    return save_tiny_smollm3(path, chat_template=SMOLLM3_CHAT_TEMPLATE, num_hidden_layers=4)


def token_rows():
    # 12 rows of 10 to 65 tokens: a padded batch of 4 is mostly padding, and the longest rows exceed max_length.
    generator = torch.Generator().manual_seed(0)
    return Dataset.from_list(
        [{"input_ids": torch.randint(20, 500, (10 + 5 * i,), generator=generator).tolist()} for i in range(12)]
    )


def train(model_dir, tmp_path, **settings):
    args = SmolSFTConfig(
        output_dir=str(tmp_path), bf16=False, report_to="none", max_steps=3, logging_steps=1, learning_rate=1e-3,
        per_device_train_batch_size=4, max_length=MAX_LENGTH, save_strategy="no", seed=0, **settings,
    )  # fmt: skip
    trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=token_rows())
    trainer.train()
    return trainer, [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_padding_free_training_has_the_padded_runs_losses(model_dir, tmp_path, capsys):
    padded, padded_losses = train(model_dir, tmp_path / "padded")
    packed, packed_losses = train(model_dir, tmp_path / "packed", smol_padding_free=True)
    assert "batches=padding-free (smol_padding_free)" in capsys.readouterr().out  # announced in the banner
    assert packed_losses == pytest.approx(padded_losses, abs=1e-5) and len(packed_losses) == 3
    # TRL truncated the long rows to max_length before the padding-free collator saw them
    assert max(len(ids) for ids in packed.train_dataset["input_ids"]) == MAX_LENGTH
    examples = [packed.train_dataset[i] for i in range(4)]
    batch = packed.data_collator(examples)
    # SDPA computes every pair of a row: rows no longer than the longest sequence, at most one per sequence
    longest = max(len(example["input_ids"]) for example in examples)
    assert (
        "attention_mask" not in batch and batch["input_ids"].shape[0] <= 4 and batch["input_ids"].shape[1] <= longest
    )
    assert int((batch["position_ids"] == 0).sum()) >= 4  # each sequence (and each row's padding run) restarts


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_bounded_rows_have_the_padded_runs_losses_for_each_kernel_that_computes_every_pair(
    model_dir, tmp_path, attention
):
    kernel = {"model_init_kwargs": {"attn_implementation": attention}}
    padded, padded_losses = train(model_dir, tmp_path / "padded", **kernel)
    packed, packed_losses = train(model_dir, tmp_path / "packed", smol_padding_free=True, **kernel)
    assert isinstance(packed.data_collator, BoundedRowsCollator)
    assert packed_losses == pytest.approx(padded_losses, abs=1e-5) and len(packed_losses) == 3
    # TRL's `num_tokens` counts the real tokens, as for the padded batches (not one row's width, nor padding runs)
    tokens = [[log["num_tokens"] for log in run.state.log_history if "num_tokens" in log] for run in (padded, packed)]
    assert tokens[0] == tokens[1] and len(tokens[0]) == 3


def test_bounded_rows_never_compute_more_than_padding():
    """Rows of at most the longest sequence, at most one per sequence: never more tokens nor attention pairs than
    the padded batch, fewer when short sequences share a row, and every label kept."""
    collator = BoundedRowsCollator(pad_token_id=0, padding_free=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        lengths = torch.randint(2, 300, (int(torch.randint(1, 12, (1,), generator=generator)),), generator=generator)
        examples = [{"input_ids": list(range(1, n + 1))} for n in lengths.tolist()]
        batch = collator(examples)
        rows, width = batch["input_ids"].shape
        longest, count = int(lengths.max()), len(examples)
        assert rows <= count and width <= longest
        assert rows * width <= count * longest and rows * width**2 <= count * longest**2
        assert int((batch["labels"] != -100).sum()) == int(
            (lengths - 1).sum()
        )  # each sequence's first token unlabelled
    short = collator([{"input_ids": [1, 2, 3]}] * 4 + [{"input_ids": list(range(1, 13))}])
    assert short["input_ids"].shape == (2, 12)  # four short rows share one row beside the long one


def test_a_varlen_kernel_gets_one_row_per_micro_batch():
    one_row = padding_free_collator(0, None, "flash_attention_2")
    assert not isinstance(one_row, BoundedRowsCollator)
    assert one_row([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}])["input_ids"].shape == (1, 5)
    assert isinstance(padding_free_collator(0, None, "sdpa"), BoundedRowsCollator)


def test_a_preset_turns_padding_free_on_and_a_recipe_packing_choice_wins(model_dir, tmp_path):
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu")
    preset_run = SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([{"messages": ROWS[0]}]))
    decision = preset_run.run_plan["padding_free"]
    assert decision.source is Source.PRESET and decision.reason == "memory preset cpu"
    assert preset_run.data_collator.padding_free and preset_run.args.smol_padding_free

    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu", packing=True)
    args.user_settings = UserSettings(
        explicit=frozenset({"output_dir", "bf16", "report_to", "memory_preset", "packing"})
    )
    own_choice = SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([{"messages": ROWS[0]}]))
    assert not own_choice.run_plan.is_on("padding_free") and not own_choice.args.smol_padding_free
    assert not [row for row in own_choice.run_plan.preset_rows() if row.setting == "smol_padding_free"]


def test_a_preset_withdraws_padding_free_where_it_cannot_apply_and_says_why(model_dir, tmp_path):
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu")
    mine = DataCollatorForLanguageModeling(pad_token_id=0)
    trainer = SmolSFTTrainer(
        model=model_dir, args=args, data_collator=mine, train_dataset=Dataset.from_list([{"messages": ROWS[0]}])
    )
    assert trainer.data_collator is mine and trainer.run_plan["padding_free"].source is Source.WITHDRAWN
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "smol_padding_free"]
    assert row.status == "unavailable" and "data_collator" in row.reason


def test_asking_for_padding_free_with_an_attention_that_mixes_sequences_stops_before_loading(model_dir, tmp_path):
    args = SmolSFTConfig(
        output_dir=str(tmp_path), bf16=False, report_to="none", smol_padding_free=True,
        model_init_kwargs={"attn_implementation": "paged|sdpa"},
    )  # fmt: skip
    with pytest.raises(FeatureError, match="smol_padding_free: true cannot apply: attn_implementation=paged|sdpa"):
        SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([{"messages": ROWS[0]}]))


@pytest.mark.parametrize("mistake", ["all-ones attention mask", "KV cache", "no position_ids"])
def test_a_packed_batch_that_would_mix_sequences_is_an_error(mistake):
    tokenizer = tiny_smollm3_tokenizer()
    model = tiny_smollm3_model(tokenizer, num_hidden_layers=4)
    guard_packed_batches(model)
    examples = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        model(**inputs, use_cache=False)  # as the collator made it: fine
        if mistake == "all-ones attention mask":
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        elif mistake == "KV cache":
            inputs["use_cache"] = True
        else:
            del inputs["position_ids"]
        with pytest.raises(PackedBatchError):
            model(**{"use_cache": False, **inputs})
        # generation (one prompt, a cache, no packed sequences) is untouched
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False)
