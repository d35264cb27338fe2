"""Score only the labelled positions in TRL's fused LM head, on the devices where TRL scores every position.

TRL's `SFTTrainer` computes the loss with a fused LM head (`trl.trainer.utils.add_fused_lm_head`): the vocabulary
projection, log-softmax, entropy and top-1 are folded in chunks without materialising the logits. On CUDA / XPU with
Triton it projects only the positions that carry a label. Everywhere else (the CPU, Apple MPS, Neuron) it projects
*every* position, prompt tokens included, and masks the results afterwards, because a varying number of positions
would recompile the kernels of compiled backends. With `assistant_only_loss` most positions are prompt: only 28% of
the demo set's predicted tokens carry a label. On a CPU, handing the head only those made the demo recipe's
training steps 1.6-1.7x faster (`tests/benchmarks/bench_presets.py`, docs/benchmarks.md).

[`LabelledScoring`] hands TRL's fused head only the labelled positions, through the interface TRL gives that head:

- `SmolSFTTrainer.compute_loss` passes `shift_labels` holding just the labelled tokens (TRL's fused forward scores
  `shift_labels` without shifting them, as it does under context parallelism), and
- a forward hook on the backbone (the module TRL's head reads `last_hidden_state` from) keeps the hidden states of
  just those positions.

TRL's own `compute_loss` then runs unchanged. Its loss, the gradient and its metrics (`entropy`,
`mean_token_accuracy`) are sums over the labelled positions, so they are the same as when every position is scored
(tests/test_labelled_scoring.py checks the loss, the gradients and the metrics for padded and padding-free batches).

```python
scoring = LabelledScoring(trainer.model)  # SmolSFTTrainer does this under `smol_score_labelled_only`
with scoring.only_labelled(inputs) as scored_inputs:
    loss = SFTTrainer.compute_loss(trainer, model, scored_inputs)
```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft import PeftModel

IGNORE_INDEX = -100


def labelled_scoring_problem(args: Any, method: str, *, custom_loss: bool = False, vision: bool = False) -> str | None:
    """Why labelled-only scoring cannot apply to this run, or None. It needs TRL's own fused loss: not a loss computed
    from the full logits (a `compute_loss_func`, label smoothing), and hidden states that line up with the labels
    (no prompt-learning virtual tokens). Vision-language models are left to TRL: not tested here."""
    if vision:
        return "the dataset has images, and vision-language models are not tested with it"
    if custom_loss:
        return "a compute_loss_func was passed, which TRL feeds the full logits"
    if getattr(args, "label_smoothing_factor", 0) and getattr(args, "loss_type", "nll") == "nll":
        return "label smoothing is computed from the full logits"
    if method not in ("full", "lora", "qlora"):
        return f"{method} adds virtual tokens before the labelled ones"
    return None


def sharded_sequence_problem(parallelism_config: Any) -> str | None:
    """Why labelled-only scoring cannot apply under accelerate's parallelism config, or None: context and sequence
    parallelism shard the sequence and pass TRL's head their own `shift_labels`."""
    if parallelism_config is None:
        return None
    if getattr(parallelism_config, "cp_enabled", False) or getattr(parallelism_config, "sp_enabled", False):
        return "context or sequence parallelism shards the sequence"
    return None


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose `last_hidden_state` TRL's fused head projects: `base_model` of the causal LM it patched."""
    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    return causal_lm.base_model


class LabelledScoring:
    """Narrows the next fused-head loss of `model` to its labelled positions. See the module docstring."""

    def __init__(self, model: torch.nn.Module):
        self._positions: torch.Tensor | None = None
        self.handle = backbone_of(model).register_forward_hook(self._keep_labelled)

    @contextmanager
    def only_labelled(self, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """`inputs` with `labels` replaced by the labelled tokens as `shift_labels` (shape `[1, n]`), for one forward
        of the model inside the block. Outside the block (generation, evaluation with logits) the hook does nothing."""
        shifted = inputs["labels"][:, 1:].reshape(-1)
        positions = (shifted != IGNORE_INDEX).nonzero().squeeze(1)
        scored = {key: value for key, value in inputs.items() if key != "labels"}
        scored["shift_labels"] = shifted.index_select(0, positions).unsqueeze(0)
        self._positions = positions
        try:
            yield scored
        finally:
            self._positions = None

    def _keep_labelled(self, module: torch.nn.Module, args: tuple, output: Any) -> Any:
        if self._positions is None:
            return None
        # One backbone call per loss: a second forward in the same block (TRL recomputing logits) sees every position.
        positions, self._positions = self._positions, None
        hidden = output.last_hidden_state[:, :-1]  # position t predicts token t + 1, as `labels[:, 1:]` above
        output.last_hidden_state = hidden.reshape(-1, hidden.size(-1)).index_select(0, positions).unsqueeze(0)
        return output

    def remove(self) -> None:
        self.handle.remove()
