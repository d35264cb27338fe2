"""Generating through LoRA adapters without paying for them: skip the adapters that add nothing, merge the others.

A LoRA layer computes `base(x) + B(A(x)) * scaling`: two more small matmuls, a scale and an add per targeted layer
and token. With `all-linear` on the demo model that is two thirds of the matmul calls of a decoding step, and half of
all its operations. For one generation pass:

- a layer whose adapter adds exactly zero (every `lora_B` before the first optimizer step) runs its base layer only:
  the same numbers, bit for bit;
- a float32 `nn.Linear` base gets its adapters merged into a copy of its weight (`W + scaling * B @ A`), swapped in
  for the pass and swapped back after, so the training weights are the very same tensors, untouched. The merged copy
  rounds differently from the adapter path (on the demo the logits moved by at most 1e-6 of the largest), so a greedy
  token could only change where the two best are that close.
  Copies are made while they fit in half the free memory of the device; the layers left over run their adapters.

Both work through peft's own `merged_adapters` flag (a merged layer runs `base_layer(x)`); nothing else is changed,
in particular not `requires_grad` (which `PeftModel.disable_adapter()` resets) nor `modules_to_save` (which it swaps
back to the untrained originals). Sharded parameters (ZeRO-3, FSDP) are left alone: the callers skip this there.

```python
from trl_smol.samples.lora import lora_fast_path

with torch.no_grad(), lora_fast_path(peft_model) as counts:
    peft_model.generate(...)  # counts: {"zero": 210, "merged": 0, "adapters": 0} at step 0
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

# Share of the device's free memory that merged copies may take; generation needs the rest (KV cache, logits).
MERGE_MEMORY_SHARE = 0.5


@contextlib.contextmanager
def lora_fast_path(model: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Within the block, LoRA layers whose adapters add zero run their base layer only, and float32 linear layers run
    merged copies of their weights; on exit every layer is as before. Yields how many layers went
    each way: `zero`, `merged`, `adapters` (unchanged). Call it under `torch.no_grad()`, in eval mode (a merged layer
    has no dropout)."""
    counts = {"zero": 0, "merged": 0, "adapters": 0}
    layers = _lora_linear_layers(model)
    if not layers:
        yield counts
        return
    shared = _shared_parameters(model)
    budgets: dict[torch.device, int] = {}  # bytes left for merged copies, per device
    touched: list[tuple[Any, list[str], torch.Tensor | None]] = []  # (layer, merged_adapters before, weight before)
    try:
        for layer, active in layers:
            if _adds_zero(layer, active):
                touched.append((layer, layer.merged_adapters, None))
                layer.merged_adapters = list(active)
                counts["zero"] += 1
                continue
            weight = layer.get_base_layer().weight
            if not _mergeable(layer, active, shared):
                counts["adapters"] += 1
                continue
            size = weight.numel() * weight.element_size()
            if weight.device not in budgets:
                budgets[weight.device] = _merge_budget(weight.device)
            if size > budgets[weight.device]:
                counts["adapters"] += 1
                continue
            # W + scaling * B @ A in one pass over W: merging is memory-bound; a separate delta doubles the traffic.
            merged = weight.data
            for name in active:  # in peft's order: one adapter after the other
                lora_a, lora_b = layer.lora_A[name].weight, layer.lora_B[name].weight
                merged = torch.addmm(merged, lora_b, lora_a, alpha=layer.scaling[name])
            touched.append((layer, layer.merged_adapters, weight.data))
            weight.data = merged
            layer.merged_adapters = list(active)
            budgets[weight.device] -= size
            counts["merged"] += 1
        yield counts
    finally:
        for layer, merged_adapters, original in reversed(touched):
            layer.merged_adapters = merged_adapters
            if original is not None:
                layer.get_base_layer().weight.data = original


def _lora_linear_layers(model: torch.nn.Module) -> list[tuple[Any, list[str]]]:
    """LoRA linear layers (plain, 8-bit, 4-bit) in their ordinary state, with their plain-LoRA active adapters.

    Layers the user disabled or merged, and adapter variants (DoRA, ...), which compute more than `B @ A`, are left
    out. These three classes run `base_layer(x)` alone when `merged`."""
    try:
        from peft.tuners.lora import bnb as lora_bnb
        from peft.tuners.lora import layer as lora_layer
    except ImportError:  # without peft there are no LoRA layers
        return []
    kinds = tuple(
        kind
        for kind in (lora_layer.Linear, getattr(lora_bnb, "Linear8bitLt", None), getattr(lora_bnb, "Linear4bit", None))
        if kind is not None
    )
    layers = []
    for module in model.modules():
        if not isinstance(module, kinds) or module.disable_adapters or module.merged:
            continue
        active = [name for name in module.active_adapters if name in module.lora_A]
        if active and not any(name in module.lora_variant for name in active):
            layers.append((module, active))
    return layers


def _adds_zero(layer: Any, active: list[str]) -> bool:
    """Whether every active adapter's `B(A(x)) * scaling` is exactly zero: `A` or `B` all zeros, and no `lora_B`
    bias. `x + 0.0 == x` in every dtype, so skipping it changes nothing."""
    for name in active:
        lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
        if lora_b.bias is not None and lora_b.bias.any():
            return False
        if lora_a.weight.any() and lora_b.weight.any():
            return False
    return True


def _mergeable(layer: Any, active: list[str], shared: set[int]) -> bool:
    base = layer.get_base_layer()
    adapters = [layer.lora_A[name].weight for name in active] + [layer.lora_B[name].weight for name in active]
    return (
        isinstance(base, torch.nn.Linear)
        and not layer.fan_in_fan_out
        # In 16 bits the merged weight would round the update away.
        and all(weight.dtype == torch.float32 for weight in [base.weight, *adapters])
        and id(base.weight) not in shared  # a tied weight (lm_head and embeddings) would change both
        and not any(layer.lora_bias.get(name, False) for name in active)
    )


def _shared_parameters(model: torch.nn.Module) -> set[int]:
    seen, shared = set(), set()
    for _, parameter in model.named_parameters(remove_duplicate=False):
        (shared if id(parameter) in seen else seen).add(id(parameter))
    return shared


def _merge_budget(device: torch.device) -> int:
    """Bytes that merged copies may take on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    elif device.type == "cpu":
        import psutil

        free = psutil.virtual_memory().available
    else:  # an accelerator whose free memory we cannot read: no copies
        return 0
    return int(free * MERGE_MEMORY_SHARE)
