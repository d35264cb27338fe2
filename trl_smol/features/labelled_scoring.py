"""Score only the labelled positions in TRL's fused LM head (`smol_score_labelled_only`).

TRL's `SFTTrainer` computes the loss with a fused LM head (`trl.trainer.utils.add_fused_lm_head`): the vocabulary
projection, log-softmax, entropy and top-1 are folded in chunks without materialising the logits. On CUDA / XPU with
Triton it projects only the positions that carry a label. Everywhere else (the CPU, Apple MPS, Neuron) it projects
*every* position, prompt tokens included, and masks the results afterwards. With `assistant_only_loss` most positions
are prompt: only 28% of the demo set's predicted tokens carry a label. On a CPU, handing the head only those made the
demo recipe's training steps 1.6-1.7x faster (`tests/benchmarks/bench_presets.py`, docs/benchmarks.md).

[`LabelledScoring`] does it through the interface TRL gives that head, inside one loss computation:

- `SmolSFTTrainer.compute_loss` passes `shift_labels` holding just the labelled tokens (TRL's fused forward scores
  `shift_labels` without shifting them, as it does under context parallelism), and
- a forward hook on the backbone (the module TRL's head reads `last_hidden_state` from), registered on entering the
  block and removed on leaving it, keeps the hidden states of just those positions. It is registered last, so any
  other hook on that module sees every position; it never stacks and nothing stays on the model after the loss.

TRL's own `compute_loss` then runs unchanged; its loss, gradients and metrics are sums over the labelled positions, so
they are the same (tests/test_labelled_scoring.py). The hook depends on how TRL's fused head reads the backbone, so
it applies only to the TRL versions it is tested with ([`TESTED_TRL`]); a block whose hook did not run, or whose
shapes disagree, fails naming the setting.

```python
scoring = LabelledScoring(trainer.model)  # SmolSFTTrainer installs it under `smol_score_labelled_only`
with scoring.only_labelled(inputs) as scored_inputs:
    loss = SFTTrainer.compute_loss(trainer, model, scored_inputs)
```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..memory.tiers import TIERS
from .base import Decision, RunContext
from .lever import PresetLever

IGNORE_INDEX = -100
SETTING = "smol_score_labelled_only"
TESTED_TRL = ("1.16",)  # major.minor versions of TRL whose fused head this is tested with


class LabelledScoringError(RuntimeError):
    """TRL's fused head did not read the backbone as labelled-only scoring expects."""


@dataclass
class LabelledScoringArguments:
    """
    smol_score_labelled_only (`bool`, *optional*, defaults to `False`):
        Hand TRL's fused LM head only the positions that carry a label. TRL does this itself on CUDA / XPU with
        Triton; elsewhere (CPU, MPS) it projects every position, prompt tokens included, and masks them after. The
        loss, gradients and metrics are the same. Turned on by a memory preset on such a device. Not with a
        `compute_loss_func`, label smoothing, prompt-learning PEFT methods, images, context / sequence parallelism,
        or a TRL version it is not tested with.
    """

    smol_score_labelled_only: bool = field(
        default=False,
        metadata={
            "help": "Project only the labelled positions in TRL's fused LM head (TRL does so itself only on CUDA/XPU "
            "with Triton). The same loss; a memory preset turns it on where TRL scores every position."
        },
    )


def trl_version_problem(version: str | None = None) -> str | None:
    """Why the installed TRL is not one labelled-only scoring is tested with, or None."""
    if version is None:
        import trl

        version = trl.__version__
    if ".".join(version.split(".")[:2]) in TESTED_TRL:
        return None
    return f"it is tested with TRL {', '.join(TESTED_TRL)} only, and TRL {version} is installed"


def sequence_sharding_problem(args: Any, environ: dict[str, str]) -> str | None:
    """Context and sequence parallelism shard the sequence and pass TRL's head their own `shift_labels`: from the
    training arguments' `parallelism_config`, or the one `accelerate launch` passes in the environment."""
    config = getattr(args, "parallelism_config", None)
    if config is not None:
        sharded = getattr(config, "cp_enabled", False) or getattr(config, "sp_enabled", False)
    else:
        uses = environ.get("ACCELERATE_USE_PARALLELISM_CONFIG", "false").lower() == "true"
        sizes = (environ.get("PARALLELISM_CONFIG_CP_SIZE", "1"), environ.get("PARALLELISM_CONFIG_SP_SIZE", "1"))
        sharded = uses and any(int(size or 1) > 1 for size in sizes)
    return "context or sequence parallelism shards the sequence" if sharded else None


def prompt_learning(context: RunContext) -> bool:
    """Whether the PEFT method adds virtual tokens before the input (prompt/prefix tuning and their kin)."""
    configs = [context.peft_config]
    model_configs = getattr(context.model, "peft_config", None)
    if isinstance(model_configs, dict):
        configs += list(model_configs.values())
    return any(getattr(config, "is_prompt_learning", False) for config in configs)


class LabelledScoringFeature(PresetLever):
    name = "labelled_scoring"
    setting = SETTING
    banner_key = "loss_positions"

    def proposal(self, context: RunContext) -> tuple[Any, str] | None:
        # TRL's fused LM head projects every position unless it runs on CUDA/XPU with Triton (TRL 1.16's
        # `add_fused_lm_head`). XPU is not detected here, so it counts as elsewhere.
        hardware = context.preset.hardware
        if TIERS[context.preset.tier].accelerator == "cpu" or hardware.accelerator != "cuda" or not hardware.triton:
            return True, "TRL's loss head scores every position here; only labelled ones: the same loss"
        return None

    def problem(self, context: RunContext, value: Any) -> str | None:
        args = context.args
        if context.vision:
            return "the dataset has images, and vision-language models are not tested with it"
        if context.custom_loss:
            return "a compute_loss_func was passed, which TRL feeds the full logits"
        if getattr(args, "label_smoothing_factor", 0) and getattr(args, "loss_type", "nll") == "nll":
            return "label smoothing is computed from the full logits"
        if prompt_learning(context):
            return f"{context.method} adds virtual tokens before the labelled ones"
        return sequence_sharding_problem(args, context.environ) or trl_version_problem()

    def describe(self, decision: Decision) -> str | None:
        return f"labelled only ({decision.reason})" if decision.on else None

    def install(self, decision: Decision, trainer: Any) -> Any:
        return LabelledScoring(trainer.model) if decision.on else None


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose `last_hidden_state` TRL's fused head projects: `base_model` of the causal LM it patched."""
    from peft import PeftModel

    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    return causal_lm.base_model


@dataclass
class _Block:
    positions: torch.Tensor
    rows: int  # predicted positions in the batch (labels[:, 1:].numel())
    fired: bool = field(default=False)


class LabelledScoring:
    """Narrows one fused-head loss of `model` to its labelled positions. See the module docstring."""

    def __init__(self, model: torch.nn.Module):
        self.backbone = backbone_of(model)
        self.scored_positions: int | None = None  # how many positions the last loss scored

    @contextmanager
    def only_labelled(self, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """`inputs` with `labels` replaced by the labelled tokens as `shift_labels` (shape `[1, n]`), for one forward
        of the model inside the block. Outside the block (generation, evaluation with logits) nothing is hooked."""
        shifted = inputs["labels"][:, 1:].reshape(-1)
        positions = (shifted != IGNORE_INDEX).nonzero().squeeze(1)
        scored = {key: value for key, value in inputs.items() if key != "labels"}
        scored["shift_labels"] = shifted.index_select(0, positions).unsqueeze(0)
        block = _Block(positions, shifted.numel())
        handle = self.backbone.register_forward_hook(lambda module, args, output: self._keep_labelled(block, output))
        try:
            yield scored
        finally:
            handle.remove()
        if not block.fired:
            raise LabelledScoringError(
                f"{SETTING}: TRL's loss did not run the model's backbone inside the loss, so the labelled positions "
                f"were not selected (TRL {_trl_version()}). Set `{SETTING}: false`."
            )
        self.scored_positions = int(positions.numel())

    def _keep_labelled(self, block: _Block, output: Any) -> Any:
        if block.fired:  # one backbone call per loss: a second forward in the same block sees every position
            return None
        block.fired = True
        hidden = getattr(output, "last_hidden_state", None)
        if (
            not isinstance(hidden, torch.Tensor)
            or hidden.dim() != 3
            or hidden.size(0) * (hidden.size(1) - 1) != block.rows
        ):
            shape = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(output).__name__
            raise LabelledScoringError(
                f"{SETTING}: the backbone's output {shape} does not line up with the labels ({block.rows} predicted "
                f"positions; TRL {_trl_version()}). Set `{SETTING}: false`."
            )
        hidden = hidden[:, :-1]  # position t predicts token t + 1, as `labels[:, 1:]` above
        output.last_hidden_state = hidden.reshape(-1, hidden.size(-1)).index_select(0, block.positions).unsqueeze(0)
        return output


def _trl_version() -> str:
    import trl

    return trl.__version__
