"""Assistant-only loss with the SmolLM3 template: masks checked by decoding the trained tokens, through TRL's traps."""

import os

import pytest
from datasets import Dataset
from trl.chat_template_utils import is_chat_template_stop_token_trained

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.data import prepare_conversations, tokenize_conversations
from trl_smol.testing import tiny_smollm3_model, tiny_smollm3_tokenizer

TODAY = "08 July 2025"
TOOL_CALL = {"type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]},
    {
        "messages": [
            {"role": "system", "content": "Be brief. /no_think"},
            {"role": "user", "content": "Add 1 and 2."},
            {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "content": "3"},
            {"role": "assistant", "content": "It is 3."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Why?"},
            {"role": "assistant", "content": "Because.", "reasoning_content": "Hm."},
        ],
        "chat_template_kwargs": {"enable_thinking": True},
    },
]
# The trained text of each conversation: every assistant turn, from <|im_start|>assistant to <|im_end|>\n.
TRAINED = [
    ["<|im_start|>assistant\n4<|im_end|>\n"],
    [
        '<|im_start|>assistant\n<think>\n\n</think>\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n'
        "</tool_call><|im_end|>\n",
        "<|im_start|>assistant\n<think>\n\n</think>\nIt is 3.<|im_end|>\n",
    ],
    ["<|im_start|>assistant\n<think>\nHm.\n</think>\nBecause.<|im_end|>\n"],
]


def trained_segments(tokenizer, input_ids, labels):
    """Decode each run of consecutive trained (label != -100) tokens."""
    segments, current = [], []
    for token_id, label in zip(input_ids, labels, strict=True):
        if label != -100:
            assert label == token_id
            current.append(token_id)
        elif current:
            segments.append(tokenizer.decode(current))
            current = []
    if current:
        segments.append(tokenizer.decode(current))
    return segments


@pytest.fixture
def tokenizer():
    return tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)


def make_trainer(tokenizer, rows=CONVERSATIONS, **config):
    values = dict(
        output_dir=f"/tmp/trl_smol_tests_unused-{os.getpid()}",
        bf16=False,
        report_to="none",
        assistant_only_loss=True,
        max_length=None,
    )
    values.update(config)
    return SmolSFTTrainer(
        tiny_smollm3_model(tokenizer),
        args=SmolSFTConfig(**values),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def test_mask_covers_exactly_the_assistant_turns_end_of_turn_included(tokenizer):
    for row, expected in zip(CONVERSATIONS, TRAINED, strict=True):
        kwargs = {"today": TODAY, **row.get("chat_template_kwargs", {})}
        out = tokenizer.apply_chat_template(row["messages"], return_assistant_tokens_mask=True, **kwargs)
        labels = [t if m else -100 for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True)]
        assert trained_segments(tokenizer, out["input_ids"], labels) == expected


def test_trl_stop_token_check_passes(tokenizer):
    assert is_chat_template_stop_token_trained(tokenizer)


def test_batched_tokenization_gives_the_ids_and_masks_of_apply_chat_template(tokenizer):
    args = SmolSFTConfig(output_dir="unused", bf16=False, assistant_only_loss=True)
    dataset = prepare_conversations(Dataset.from_list(CONVERSATIONS), args=args, processing_class=tokenizer)
    tokenized = tokenize_conversations(dataset, tokenizer, args=args)
    for row, example in zip(CONVERSATIONS, tokenized, strict=True):
        kwargs = {"today": TODAY, **row.get("chat_template_kwargs", {})}
        out = tokenizer.apply_chat_template(row["messages"], return_assistant_tokens_mask=True, **kwargs)
        assert example["input_ids"] == out["input_ids"]
        assert example["labels"] == [
            t if m else -100 for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True)
        ]


def test_without_assistant_only_loss_every_token_is_trained(tokenizer):
    args = SmolSFTConfig(output_dir="unused", bf16=False)
    tokenized = tokenize_conversations(
        prepare_conversations(Dataset.from_list(CONVERSATIONS), args=args), tokenizer, args=args
    )
    assert all(example["labels"] == example["input_ids"] for example in tokenized)


def test_trainer_trains_assistant_turns_with_im_end_as_eos_and_a_distinct_pad():
    tokenizer = tiny_smollm3_tokenizer()  # no chat template, like SmolLM3-3B-Base
    trainer = make_trainer(tokenizer)
    for example, expected in zip(trainer.train_dataset, TRAINED, strict=True):
        assert trained_segments(tokenizer, example["input_ids"], example["labels"]) == expected
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>"
    assert im_end in trainer.model.generation_config.eos_token_id
    assert tokenizer.pad_token == "<|finetune_right_pad_id|>"


def test_truncation_by_max_length_keeps_labels_aligned_and_drops_rows_left_without_loss(tokenizer):
    # trl issue 3927: masks computed before truncation must be cut together with the ids.
    long_prompt = {"messages": [{"role": "user", "content": "Paris " * 400}, {"role": "assistant", "content": "ok"}]}
    full = [(e["input_ids"], e["labels"]) for e in make_trainer(tokenizer, CONVERSATIONS).train_dataset]
    # Cut three tokens into the latest-starting first assistant turn; the long prompt alone exceeds that.
    max_length = max(next(i for i, label in enumerate(labels) if label != -100) for _, labels in full) + 3
    rows = [*CONVERSATIONS, long_prompt]
    tokenizer = tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)
    # With `invalid_rows: drop` the row cut to nothing is counted, then dropped as TRL drops it (`error` stops).
    cut = make_trainer(tokenizer, rows, max_length=max_length, invalid_rows="drop").train_dataset
    assert len(cut) == len(CONVERSATIONS)  # the long prompt row has no trained token left
    cut_rows = 0
    for example in cut:
        ids, labels = next(pair for pair in full if pair[0][: len(example["input_ids"])] == example["input_ids"])
        assert len(example["input_ids"]) == len(example["labels"]) <= max_length
        assert example["labels"] == labels[:max_length]
        cut_rows += len(labels) > max_length
    assert cut_rows >= 1


def test_packing_bfd_keeps_each_conversation_mask(tokenizer):
    unpacked = make_trainer(tokenizer).train_dataset
    packed = make_trainer(
        tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE), packing=True, packing_strategy="bfd", max_length=2048
    ).train_dataset
    assert len(packed) < len(unpacked)
    segments = [s for e in packed for s in trained_segments(tokenizer, e["input_ids"], e["labels"])]
    assert sorted(segments) == sorted(s for turns in TRAINED for s in turns)


def test_use_liger_kernel_still_applies_the_mask(tokenizer, monkeypatch):
    # Liger needs triton (GPU); its layer kernels do not touch the loss, which TRL computes from the masked labels.
    import transformers.trainer

    patched = []
    monkeypatch.setattr(transformers.trainer, "apply_liger_kernel", lambda model, config: patched.append(config))
    trainer = make_trainer(
        tokenizer, use_liger_kernel=True, max_steps=1, per_device_train_batch_size=3, save_strategy="no"
    )
    for example, expected in zip(trainer.train_dataset, TRAINED, strict=True):
        assert trained_segments(tokenizer, example["input_ids"], example["labels"]) == expected
    trainer.train()
    assert patched == [{"fused_linear_cross_entropy": False}]  # layer kernels only: TRL's label-masked loss stays


def test_use_liger_kernel_with_liger_installed(tokenizer):
    pytest.importorskip(
        "liger_kernel.transformers", reason="liger-kernel (needs triton, i.e. a GPU build) is not importable"
    )
    trainer = make_trainer(tokenizer, use_liger_kernel=True)
    for example, expected in zip(trainer.train_dataset, TRAINED, strict=True):
        assert trained_segments(tokenizer, example["input_ids"], example["labels"]) == expected


@pytest.mark.slow
def test_two_training_steps_train_on_the_assistant_turns_only(tmp_path):
    tokenizer = tiny_smollm3_tokenizer()
    trainer = make_trainer(
        tokenizer,
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=3,
        save_strategy="no",
        logging_steps=1,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    segments = [
        s
        for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)
        for s in trained_segments(tokenizer, ids, labels)
    ]
    assert sorted(segments) == sorted(s for turns in TRAINED for s in turns)
    result = trainer.train()
    assert result.global_step == 2
    assert all(log["loss"] > 0 for log in trainer.state.log_history if "loss" in log)
