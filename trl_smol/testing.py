"""Tiny, offline stand-ins for SmolLM3, for tests and examples that must run in seconds without the hub.

```python
from trl_smol.testing import tiny_smollm3_model, tiny_smollm3_tokenizer

tokenizer = tiny_smollm3_tokenizer()          # byte-level BPE carrying SmolLM3's special tokens
model = tiny_smollm3_model(tokenizer)          # SmolLM3ForCausalLM, 2 layers, hidden 64, random weights
```
"""

from __future__ import annotations

import functools

# SmolLM3's special tokens (Llama-3 style names), in the order that keeps ids small and stable here.
SMOLLM3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|finetune_right_pad_id|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<code>",
    "</code>",
]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is the capital.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
    "## Metadata Knowledge Cutoff Date: June 2025 Today Date: Reasoning Mode: /think /no_think",
    "## Custom Instructions ### Tools function name arguments json object user assistant system tool",
    'def add(a, b): return a + b  print(add(1, 2))  {"name": "get_weather", "arguments": {"city": "Paris"}}',
    "0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' \" \n\n",
]


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SMOLLM3_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tokenizer.to_str()


def tiny_smollm3_tokenizer(chat_template: str | None = None):
    """A byte-level BPE tokenizer (about 600 tokens) with SmolLM3's special tokens, built offline in milliseconds.

    Like SmolLM3-3B-Base it has no chat template unless one is given; eos is `<|end_of_text|>` and the pad token is
    `<|finetune_right_pad_id|>`.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|finetune_right_pad_id|>",
        additional_special_tokens=SMOLLM3_SPECIAL_TOKENS[2:4],
        model_max_length=512,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def tiny_smollm3_config(tokenizer=None, **overrides):
    from transformers import SmolLM3Config

    tokenizer = tokenizer or tiny_smollm3_tokenizer()
    values = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    values.update(overrides)
    return SmolLM3Config(**values)


def tiny_smollm3_model(tokenizer=None, seed: int = 0, **overrides):
    """A randomly initialised `SmolLM3ForCausalLM` (2 layers, hidden 64, NoPE on every 4th layer as in SmolLM3)."""
    import torch
    from transformers import SmolLM3ForCausalLM

    torch.manual_seed(seed)
    return SmolLM3ForCausalLM(tiny_smollm3_config(tokenizer, **overrides))


def save_tiny_smollm3(path, chat_template: str | None = None, **overrides) -> str:
    """Write a tiny SmolLM3 checkpoint and its tokenizer to `path`, for tests that load from a directory."""
    tokenizer = tiny_smollm3_tokenizer(chat_template)
    model = tiny_smollm3_model(tokenizer, **overrides)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
