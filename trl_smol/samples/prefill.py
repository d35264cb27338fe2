"""Prefill a batch of prompts without padding, computing a prefix that several prompts share only once.

Before generating, `generate` runs the whole left-padded batch through the model: every pad position costs as much as
a prompt token, and the SmolLM3 system prompt, the same in every think (or no_think) prompt, is computed once per
prompt. On the demo's four prompts (88 to 262 tokens, padded to 4 x 262) that prefill was over a third of a pass.

[`prefilled_cache`] runs the prompts one by one instead, each continuing from the longest prefix an earlier prompt
already computed, and lays their keys and values out as the left-padded batch that `generate` then continues from.
The positions are the same as in the padded batch (left pads take no position), so the numbers are those of the
batched prefill up to float rounding; only the last prompt token is left for `generate`, which picks the first new
token from it as before.

```python
cache = prefilled_cache(model, encoded)  # None where the model's cache is not a plain per-layer KV cache
model.generate(input_ids=input_ids, attention_mask=attention_mask, **{cache_argument(): cache})
```
"""

from __future__ import annotations

from typing import Any

import torch


def cache_argument() -> str:
    """The name `generate` and `forward` take the KV cache by: `cache` in recent transformers, `past_key_values`
    before."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def prefilled_cache(model: torch.nn.Module, prompts: list[list[int]]) -> Any | None:
    """A `DynamicCache` holding every prompt but its last token, left-padded to the longest prompt; `None` when the
    model's cache is not a plain full-attention one (sliding windows, recurrent states), which this does not lay out.
    Call it under `torch.no_grad()`."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or min(map(len, prompts)) < 2:
        return None
    if any(type(layer) is not DynamicLayer for layer in DynamicCache(config=config).layers):
        return None
    device = next(model.parameters()).device
    argument = cache_argument()
    done: list[tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = []  # (tokens, keys and values per layer)
    for prompt in prompts:
        body = prompt[:-1]
        shared, known = 0, None
        for tokens, states in done:
            length = _common_prefix(tokens, body)
            if length > shared:
                shared, known = length, states
        cache = DynamicCache(config=config)
        if known is not None:
            for index, (keys, values) in enumerate(known):
                cache.layers[index].update(keys[..., :shared, :], values[..., :shared, :])
        if shared < len(body):
            rest = torch.tensor([body[shared:]], dtype=torch.long, device=device)
            model(input_ids=rest, use_cache=True, logits_to_keep=1, **{argument: cache})
        done.append((body, [(layer.keys, layer.values) for layer in cache.layers]))
    width = max(len(tokens) for tokens, _ in done)
    layers = []
    for index in range(len(done[0][1])):
        keys = [_pad_left(states[index][0], width) for _, states in done]
        values = [_pad_left(states[index][1], width) for _, states in done]
        layers.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=layers)


def _common_prefix(first: list[int], second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def _pad_left(states: torch.Tensor, width: int) -> torch.Tensor:
    """`[1, heads, length, dim]` to `[1, heads, width, dim]`, zeros first: the attention mask hides them."""
    return torch.nn.functional.pad(states, (0, 0, width - states.shape[-2], 0))
