"""The attention kernel the model loads with, named in the banner (`attention=flash_attention_2 (...)`).

```yaml
memory_preset: auto                                      # FlashAttention where its package runs here, else SDPA
model_init_kwargs: {attn_implementation: flex_attention} # or yours, which always wins
```

Nothing is installed: the kernel is `model_init_kwargs.attn_implementation`, the user's or the memory preset's choice
(`trl_smol.memory.kernels.choose_attention`: FlashAttention 3 / 2 where installed, never a Hub kernel, else SDPA),
or transformers' default, SDPA. The banner shows it when the user set it or a preset chose it; with the plugin's
settings off it stays out of the banner, as TRL's defaults do.
"""

from __future__ import annotations

from ..memory.hardware import HardwareInfo
from ..memory.kernels import choose_attention, model_type_of
from ..memory.tiers import TIERS
from .base import Decision, Feature, RunContext, Source

ATTENTION_SETTING = "model_init_kwargs.attn_implementation"


class Attention(Feature):
    name = "attention"
    banner_key = "attention"

    def decide(self, context: RunContext) -> Decision:
        if context.model is not None:  # already loaded: its kernel is the caller's
            value = getattr(context.model.config, "_attn_implementation", None) or "sdpa"
            return Decision(self.name, Source.DEFAULT, value, "the model as passed")
        hardware = context.preset.hardware if context.preset is not None else context.hardware
        chosen = (getattr(context.args, "model_init_kwargs", None) or {}).get("attn_implementation")
        if chosen:
            return Decision(
                self.name, Source.USER, chosen, "set in the recipe or command line", _needs_download(chosen, hardware)
            )
        if context.preset is None:
            return Decision(self.name, Source.DEFAULT, "sdpa", "transformers' default")
        value = context.attention or "sdpa"
        rows = [row for row in context.preset.rows if row.setting == ATTENTION_SETTING]
        if rows:
            reason = rows[0].reason
        elif TIERS[context.preset.tier].accelerator == "cuda":
            reason = choose_attention(hardware, model_type_of(context.model_name))[1]
        else:
            reason = f"transformers' default; memory preset {context.preset.tier}"
        return Decision(self.name, Source.PRESET, value, reason)

    def describe(self, decision: Decision) -> str | None:
        if decision.source not in (Source.USER, Source.PRESET):
            return None
        return f"{decision.value} ({decision.reason})"


def _needs_download(attention: str, hardware: HardwareInfo | None) -> str | None:
    """A warning when the user's FlashAttention has no package on this GPU machine: transformers then fetches a Hub
    kernel when the model loads, which fails offline."""
    if hardware is None or hardware.accelerator != "cuda" or not attention.startswith("flash_attention"):
        return None
    if attention in hardware.attention_kernels:
        return None
    offline = " and the Hub is offline: the model load will fail" if hardware.hub_offline else ""
    return (
        f"attn_implementation={attention}: its package is not installed for this GPU, so transformers fetches a Hub "
        f"kernel when the model loads{offline}. Install it, or leave attn_implementation unset under a memory preset."
    )
