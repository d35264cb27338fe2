"""A step-time model: which of the plans that fit runs fastest.

A training step of `accumulation` micro-steps of `micro` rows costs, per micro-step, a fixed part (kernel launches,
the optimizer's per-micro-step bookkeeping: it does not shrink with fewer rows) and a part per token. Gradient
checkpointing recomputes each layer's forward in the backward: about a third more per token (forward = 1/3 of
forward + backward; Chen et al. 2016, "Training deep nets with sublinear memory cost").

```python
from trl_smol.memory.speed import step_time_model

model = step_time_model(hardware, shape, method="lora")
model.seconds(micro=4, accumulation=2, tokens_per_row=2048, checkpointing=False)   # estimated seconds per step
```

Calibration, per method, from measurements the project commits:

- NVIDIA H200, SmolLM3-3B, 2048-token rows, checkpointing on (tests/benchmarks/results/gpu/
  gpu_bench_h200_2026-11-30.json: micro-batch 8 x 1 and 2 x 8, median of steps 3-5): per token / fixed per micro-step
  LoRA 54.3 us / 0.238 s, QLoRA 44.6 us / 0.288 s, full 48.8 us / 0.087 s. Another GPU's per-token cost is scaled by
  its dense bf16 (T4: fp16) peak against the H200's; the fixed part is kept. Without checkpointing the per-token cost
  is divided by 4/3 (the rule above; not measured on a GPU yet).
- The CPU: the demo model (135M parameters) on 2 cores, LoRA without checkpointing, about 7.5 ms per token
  (tests/benchmarks/results/report.json, presets, `auto`: 5.8-7.6 s per step of 8 demo rows, ~870 tokens); the fixed
  part is negligible there. Per-token cost scales with the parameter count.

The model ranks plans; its absolute seconds are estimates (`trl-smol doctor` prints them as such).
"""

from __future__ import annotations

from dataclasses import dataclass

from .hardware import HardwareInfo
from .shapes import ModelShape

RECOMPUTE = 4 / 3  # gradient checkpointing: one more forward, a third of forward + backward
H200_PARAMETERS = 3_075_098_624  # SmolLM3-3B, as counted by the GPU benchmark
H200_PEAK_TFLOPS = 989.4
# (seconds per token, seconds per micro-step) on an H200 with checkpointing, SmolLM3-3B, by method.
H200 = {"lora": (54.3e-6, 0.238), "qlora": (44.6e-6, 0.288), "full": (48.8e-6, 0.087)}
# Dense bf16 tensor-core peaks (fp16 on T4, which has no bf16), TFLOPS, from the vendors' data sheets.
PEAK_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,
    "A100": 312.0,
    "L40": 181.0,
    "RTX 4090": 165.2,
    "4090": 165.2,
    "A10": 125.0,
    "L4": 121.0,
    "T4": 65.0,
}
CPU_SECONDS_PER_TOKEN_PER_PARAMETER = 7.5e-3 / 135e6  # the demo model on 2 cores, LoRA, no checkpointing


@dataclass(frozen=True)
class StepTimeModel:
    """Seconds per training step of a plan on one device (see the module docstring)."""

    seconds_per_token: float  # with checkpointing off
    seconds_per_micro_step: float
    calibration: str

    def seconds(self, *, micro: int, accumulation: int, tokens_per_row: int, checkpointing: bool) -> float:
        per_token = self.seconds_per_token * (RECOMPUTE if checkpointing else 1.0)
        return accumulation * (self.seconds_per_micro_step + micro * tokens_per_row * per_token)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name (longest match first), or None for one not in the table."""
    for name in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if name.lower() in device_name.lower():
            return PEAK_TFLOPS[name]
    return None


def step_time_model(hardware: HardwareInfo, shape: ModelShape | None, method: str) -> StepTimeModel:
    """The step-time model of `method` on `hardware` for a model of `shape` (SmolLM3-3B when unknown)."""
    parameters = _parameters(shape) if shape is not None else H200_PARAMETERS
    if hardware.accelerator == "cpu" or not hardware.devices:
        per_token = CPU_SECONDS_PER_TOKEN_PER_PARAMETER * parameters
        return StepTimeModel(per_token, 0.0, "CPU, from the demo preset benchmark")
    per_token, fixed = H200.get(method, H200["lora"])
    name = hardware.devices[0].name
    peak = peak_tflops(name)
    scale = H200_PEAK_TFLOPS / peak if peak else H200_PEAK_TFLOPS / PEAK_TFLOPS["A100"]
    where = f"{name}: H200 measurements x {scale:.2f} (peak bf16)" if peak else f"{name}: ranked as an A100"
    per_token = per_token / RECOMPUTE * scale * parameters / H200_PARAMETERS
    return StepTimeModel(per_token, fixed, where)


def _parameters(shape: ModelShape) -> int:
    per_layer = sum(inputs * outputs for inputs, outputs in shape.projection_shapes().values())
    embeddings = shape.vocab_size * shape.hidden_size * (1 if shape.tie_word_embeddings else 2)
    return shape.num_hidden_layers * per_layer + embeddings
