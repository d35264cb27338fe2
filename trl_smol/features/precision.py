"""The training precision: TRL's `bf16` / `fp16`, a memory preset's choice, or float32 where TRL would stop.

TRL trains in bf16 unless told otherwise, and transformers then stops on any machine without a bf16 accelerator
("doesn't support bf16/gpu"), e.g. the course's example on a laptop. Left unset, precision follows the machine there:
float32, announced by the banner. An explicit `bf16` is kept; bf16 autocast on a CPU that emulates bf16 is announced
with a warning (it is many times slower than float32).
"""

from __future__ import annotations

from typing import Any

from ..launch import has_accelerator
from ..memory import hardware
from .base import Decision, Feature, RunContext, Source

# The warning for bf16 autocast where the CPU emulates bf16 (the banner, the trainer's log and `trl-smol doctor`).
SLOW_BF16 = (
    "bf16 autocast on a CPU without native bf16 (no AVX512-BF16, AMX or Arm BF16): torch emulates it, many times "
    "slower than float32 (10.7x per training step of the demo model on an AMD EPYC core). Set `bf16: false`, or "
    "`memory_preset: auto`, which trains in float32 on a CPU."
)


def bf16_trainable(use_cpu: bool) -> bool:
    """Whether transformers accepts `bf16=True` here (its own check: a bf16 GPU, XLA, or `use_cpu`)."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    return bool(use_cpu) or is_torch_bf16_gpu_available() or is_torch_xla_available()


def slow_bf16_warning(precision: str, use_cpu: bool) -> str | None:
    """[`SLOW_BF16`] when `precision` is bf16 on a CPU that emulates it, else None."""
    on_cpu = bool(use_cpu) or not has_accelerator()
    return SLOW_BF16 if precision == "bf16" and on_cpu and not hardware.cpu_has_native_bf16() else None


class Precision(Feature):
    name = "precision"
    banner_key = "precision"

    def resolve_defaults(self, args: Any) -> None:
        if args.bf16 is None and not args.fp16 and not bf16_trainable(args.use_cpu):
            args.bf16 = False

    def decide(self, context: RunContext) -> Decision:
        args = context.args
        changes = context.preset.changes if context.preset is not None else {}
        bf16, fp16 = changes.get("bf16", args.bf16), changes.get("fp16", args.fp16)
        precision = "bf16" if bf16 else "fp16" if fp16 else "float32"
        warning = slow_bf16_warning(precision, getattr(args, "use_cpu", False))
        if "bf16" in changes or "fp16" in changes:
            return Decision(self.name, Source.PRESET, precision, f"memory preset {context.preset_tier}", warning)
        if context.explicit & {"bf16", "fp16"}:
            return Decision(self.name, Source.USER, precision, None, warning)
        if precision == "float32" and not bf16_trainable(getattr(args, "use_cpu", False)):
            reason = "bf16 left unset; no bf16 device here, where TRL would stop"
            return Decision(self.name, Source.DEFAULT, precision, reason, warning)
        return Decision(self.name, Source.DEFAULT, precision, None, warning)

    def describe(self, decision: Decision) -> str | None:
        if decision.reason:
            return f"{decision.value} ({decision.reason})"
        if decision.warning:
            return f"{decision.value} (on a CPU without native bf16: slow, see the warning)"
        return None
