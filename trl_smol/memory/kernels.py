"""The kernels a memory preset loads the model with: only what runs on the machine without a download.

```python
from trl_smol.memory.hardware import detect_hardware
from trl_smol.memory.kernels import choose_attention, choose_hub_kernels

choose_attention(detect_hardware())    # ("flash_attention_2", "flash-attn installed") on an A100 with flash-attn
choose_hub_kernels(detect_hardware())  # (False, "the Hub is offline: ...") on an offline GPU machine with `kernels`
```

The attention kernel (`model_init_kwargs.attn_implementation`), in this order:

1. `flash_attention_3` on a Hopper GPU (compute capability 9.x) where FlashAttention 3 is installed (the module
   `flash_attn_interface` of the `flash-attn-3` distribution);
2. `flash_attention_2` on Ampere or newer where the `flash-attn` package is installed;
3. otherwise `sdpa`, transformers' own default, which SmolLM3 supports (`_supports_sdpa`).

A Hub kernel is never chosen: `flash_attention_2` without the `flash_attn` package makes transformers 5.25 fetch
`kernels-community/flash-attn2` from the Hub when the model loads, which fails on an offline machine. `flex_attention`
is not chosen either, although SmolLM3 supports it (`_supports_flex_attn`): transformers compiles it with
`torch.compile` on first use (`max-autotune` in training: minutes, Triton on CUDA, a C++ compiler on a CPU), and the
estimator's activation figures are measured with SDPA / FlashAttention. Set it in `model_init_kwargs` to use it.

Liger's kernels: TRL 1.16 deprecates `use_liger_kernel` for `model_init_kwargs={"use_kernels": True}`, transformers'
Hub kernels (for SmolLM3 on CUDA: Liger's RMSNorm, fetched from `kernels-community/liger-kernels`). transformers 5.25
already loads these by default wherever `kernels` is installed, so a preset says it explicitly where Liger is installed
and the Hub can be reached, and turns it off where the Hub is offline: the kernel would be a download, and transformers
stops the load when it cannot get it (only a missing file falls back to the layer's own forward).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .hardware import HardwareInfo

DEFAULT_MODEL_TYPE = "smollm3"

# Why flex attention is not the preset's choice (docs/memory.md, `trl-smol doctor`).
FLEX_NOT_CHOSEN = (
    "flex_attention is supported but not chosen: transformers compiles it with torch.compile on first use, and the "
    "memory estimate is measured with SDPA / FlashAttention"
)


@cache
def attention_support(model_type: str = DEFAULT_MODEL_TYPE) -> frozenset[str]:
    """The attention families transformers' causal-LM class for `model_type` declares: "flash", "sdpa", "flex"
    (its `_supports_flash_attn`, `_supports_sdpa`, `_supports_flex_attn`). An unknown model type: "sdpa" only, which
    transformers checks itself when it loads the model."""
    try:
        import transformers
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        model_class = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
    except (ImportError, KeyError, AttributeError):
        return frozenset({"sdpa"})
    flags = {"flash": "_supports_flash_attn", "sdpa": "_supports_sdpa", "flex": "_supports_flex_attn"}
    return frozenset(name for name, flag in flags.items() if getattr(model_class, flag, False))


def model_type_of(model: Any) -> str:
    """`model_type` of a config or a loaded model; a name or path is taken as SmolLM3 (the plugin's model)."""
    config = getattr(model, "config", model)
    return getattr(config, "model_type", None) or DEFAULT_MODEL_TYPE


def choose_attention(hardware: HardwareInfo, model_type: str = DEFAULT_MODEL_TYPE) -> tuple[str, str]:
    """The attention implementation a preset loads the model with on `hardware`, and why (module docstring)."""
    support = attention_support(model_type)
    kernels = hardware.attention_kernels
    if hardware.accelerator == "cuda" and "flash" in support:
        if "flash_attention_3" in kernels:
            return "flash_attention_3", "FlashAttention 3 installed, Hopper GPU"
        if "flash_attention_2" in kernels:
            return "flash_attention_2", "flash-attn installed"
    if "sdpa" not in support:
        return "eager", f"{model_type} declares no SDPA support in transformers"
    if hardware.accelerator == "cuda":
        where = "the Hub is offline" if hardware.hub_offline else "a Hub kernel would be a download"
        return "sdpa", f"no flash-attn package installed; {where}"
    return "sdpa", f"transformers' default; no FlashAttention on {hardware.accelerator.upper()}"


def choose_hub_kernels(hardware: HardwareInfo) -> tuple[bool, str] | None:
    """`model_init_kwargs.use_kernels` for a preset on `hardware`, and why; None leaves transformers' default."""
    if hardware.accelerator != "cuda" or not hardware.hub_kernels:
        return None  # no Hub kernel is mapped for SmolLM3's layers off CUDA; without `kernels` nothing is fetched
    if hardware.hub_offline:
        return False, (
            "the Hub is offline: transformers' Hub kernels (Liger RMSNorm) would be a download, and the load stops "
            "without them"
        )
    if hardware.liger_kernel:
        return True, "Liger through the Hub kernels, TRL 1.16's path (`use_liger_kernel` is deprecated)"
    return None
