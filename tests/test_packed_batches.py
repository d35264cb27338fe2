"""Padding-free and packed (bfd) batches compute what separate sequences compute, on SmolLM3 with a NoPE layer.

SmolLM3 skips RoPE on every 4th layer; a NoPE layer tells tokens apart only through the attention mask, so a batch
that lets sequences see each other changes its output. With `position_ids` marking where each sequence starts and no
attention mask, transformers keeps them apart (with SDPA and eager alike). Three ways to get it wrong are shown to
mix sequences, so the equality checks here can fail.
"""

import pytest
import torch
from datasets import Dataset
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig
from trl_smol.data import prepare_conversations, tokenize_conversations
from trl_smol.testing import tiny_smollm3_model, tiny_smollm3_tokenizer

TOLERANCE = 1e-5
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [
        {"role": "user", "content": "Name a colour of the sea."},
        {"role": "assistant", "content": "Blue, and sometimes green."},
        {"role": "user", "content": "And of the sky at night?"},
        {"role": "assistant", "content": "Black, with stars."},
    ],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def setup(request):
    tokenizer = tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)
    torch.manual_seed(0)
    model = tiny_smollm3_model(tokenizer, num_hidden_layers=4).eval()  # layer 3 is a NoPE layer
    model.config._attn_implementation = request.param
    assert 0 in model.config.no_rope_layers  # 0 marks a layer without RoPE
    args = SmolSFTConfig(output_dir="unused", bf16=False, report_to="none", assistant_only_loss=True)
    rows = Dataset.from_list([{"messages": messages} for messages in CONVERSATIONS])
    rows = prepare_conversations(rows, args=args, processing_class=tokenizer)
    examples = tokenize_conversations(rows, tokenizer, args=args).select_columns(["input_ids", "labels"])
    return model, tokenizer, [dict(example) for example in examples]


def separate(model, examples):
    with torch.no_grad():
        return [model(input_ids=torch.tensor([e["input_ids"]]), use_cache=False).logits[0] for e in examples]


def segments(tensor, lengths):
    return torch.split(tensor, lengths, dim=0)


def test_padding_free_batch_equals_separate_runs(setup):
    model, tokenizer, examples = setup
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    inputs = {key: value for key, value in batch.items() if key != "labels"}  # cu_seq_lens etc. too, as in training
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits[0]
    lengths = [len(e["input_ids"]) for e in examples]
    for packed, alone in zip(segments(logits, lengths), separate(model, examples), strict=True):
        assert (packed - alone).abs().max() < TOLERANCE
    # Assistant-only labels survive: each sequence's labels, with its first token masked (no token before it).
    for labels, example in zip(segments(batch["labels"][0], lengths), examples, strict=True):
        assert labels[1:].tolist() == example["labels"][1:] and labels[0] == -100
        assert (labels != -100).any()


def test_bfd_packed_batch_equals_separate_runs(setup):
    model, tokenizer, examples = setup
    total = sum(len(e["input_ids"]) for e in examples)
    packed = pack_dataset(Dataset.from_list(examples), seq_length=total, strategy="bfd")
    (row,) = list(packed)
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)([row])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    by_ids = {tuple(e["input_ids"]): alone for e, alone in zip(examples, separate(model, examples), strict=True)}
    ids = batch["input_ids"][0]
    for piece_ids, piece in zip(segments(ids, row["seq_lengths"]), segments(logits, row["seq_lengths"]), strict=True):
        assert (piece - by_ids[tuple(piece_ids.tolist())]).abs().max() < TOLERANCE


@pytest.mark.parametrize("mistake", ["all-ones attention mask", "no position_ids", "KV cache"])
def test_the_ways_to_get_it_wrong_mix_sequences(setup, mistake):
    model, tokenizer, examples = setup
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    if mistake == "all-ones attention mask":
        inputs["attention_mask"] = torch.ones_like(batch["input_ids"])
    elif mistake == "no position_ids":
        del inputs["position_ids"]
    else:
        inputs["use_cache"] = True  # transformers skips its packed-sequence check when a cache exists
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    lengths = [len(e["input_ids"]) for e in examples]
    later = list(zip(segments(logits, lengths), separate(model, examples), strict=True))[1:]
    assert max((packed - alone).abs().max() for packed, alone in later) > 1e-3
