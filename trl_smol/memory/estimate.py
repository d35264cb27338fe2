r"""Peak training memory of a causal LM under TRL's SFT, from the model's shape alone (no weights are read).

```python
from trl_smol.memory import estimate_memory

estimate = estimate_memory("HuggingFaceTB/SmolLM3-3B-Base", method="qlora", max_length=2048)
print(estimate.total_bytes / 2**30, estimate.breakdown)
```

`model` is a [`ModelShape`], a `PretrainedConfig`, a model object, a local checkpoint directory, or a hub id whose
`config.json` is read (from the local hub cache when offline). SmolLM3-3B, SmolLM3-3B-Base and the plugin's demo model
are known without any file.

## The formula

Notation: `P` parameters, `P_lin` the parameters of the seven projections (q, k, v, o, gate, up, down) in every
layer, `h` hidden size, `i` intermediate size, `kv` = key/value heads x head_dim, `L` layers, `V` vocabulary, `N`
tokens in a micro-batch (`per_device_train_batch_size * max_length`), `b_w` bytes per weight element (the load dtype:
TRL loads a model given by name in float32 unless `model_init_kwargs["dtype"]` says otherwise), `b_c` bytes per
element of the compute dtype (bf16/fp16 autocast, else `b_w`).

- **Weights**: `P * b_w`. With mixed precision over float32 weights, autocast keeps a `b_c` copy of each projection
  alive for the backward pass when gradient checkpointing is off (`P_lin * b_c`).
- **Quantisation** (QLoRA, bitsandbytes NF4): projections cost 0.5 B/param; the block absmax adds 4/64 B/param, or
  1/64 + 4/(64*256) B/param with double quantisation (QLoRA paper, sec. 2); embeddings and norms stay at `b_w`; one
  dequantised projection in `b_c` lives during each matmul.
- **Adapters** (LoRA on the chosen projections, rank `r`): `r * (in + out)` params per module. PEFT upcasts adapters
  to float32 over a bf16/fp32 base; TRL casts QLoRA adapters to bf16.
- **Gradients**: one per trainable parameter, in its dtype.
- **Optimizer**: AdamW keeps two states per trainable parameter in its dtype; bitsandbytes 8-bit AdamW (paged or not)
  2 B/param (tensors under 4096 elements stay 32-bit); the `foreach` (non-fused) torch AdamW adds one transient copy.
- **Activations** per token and layer, saved for backward without checkpointing:
  `b_c * (5h + 3kv + 4i)` for projection inputs/outputs and the SwiGLU MLP, plus the two RMSNorms that upcast to
  float32 (`2 * (4h + b_w h)`, or `2 * 4h` in float32). Attention is SDPA/FlashAttention, so there is no `s^2` term
  (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", adapted to SwiGLU and
  GQA). With gradient checkpointing: one `b_w h` checkpoint per layer plus one layer's recomputation and its
  gradient buffers, `b_c (2h + 2i)`. LoRA dropout above 0 adds `(b_c + 1)(6h + i)` per layer.
- **Logits and loss**: TRL's fused LM head never materialises the `N x V` logits. It scores tiles of up to 4096
  tokens x 32768 vocabulary entries: one tile buffer on CUDA (Triton), several float32 temporaries of that size on
  CPU/MPS (the torch fallback). The backward keeps a float32 gradient of the hidden states (`4 N h`) and, when the LM
  head (tied embedding) is trained, a float32 weight gradient (`4 V h`).
- **Full fine-tuning peaks in one of two phases**: the start of the backward pass (activations, LM-head temporaries
  and its gradient) or the end of backward and the optimizer step (all gradients, the update copy). The estimate
  takes the larger; the breakdown shows that phase's lines.
- **Framework overhead**: the CUDA context (about 0.6 GiB) plus 8% allocator fragmentation of everything else on
  CUDA; on CPU, the trainer's own objects and the tokenized data (measured, see `tests/benchmarks`).

Sources: SmolLM3-3B config (36 layers, hidden 2048, intermediate 11008, 16 heads, 4 KV heads, vocab 128256, tied
embeddings, 3,075,098,624 parameters); the QLoRA paper (Dettmers et al. 2023); TRL `trl/trainer/utils.py`
(`add_fused_lm_head`) and `trl/kernels/chunked_logprob.py`; PEFT's adapter dtype handling; bitsandbytes 8-bit
optimizers. The CPU constants are fitted to the demo model (`tests/benchmarks/bench_memory_cpu.py`); the CUDA ones are
checked by `tests/benchmarks/gpu_memory.py`. Expect about +-20%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .hardware import GIB
from .shapes import KNOWN_MODELS, ModelShape, ModelShapeError, model_shape

METHODS = ("full", "lora", "qlora")
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "auto": 2}
EIGHT_BIT_OPTIMIZERS = ("8bit", "adamw_bnb", "paged_adamw_8bit")

# TRL's fused LM head (`trl.kernels.chunked_logprob`): tokens and vocabulary entries per projection tile.
LOGPROB_TOKEN_TILE = 4096
LOGPROB_VOCAB_TILE = 32768

CUDA_CONTEXT_BYTES = int(0.6 * GIB)
CUDA_FRAGMENTATION = 0.08
# Fitted on the demo model (tests/benchmarks/bench_memory_cpu.py): the trainer, accelerate, dataloader and tokenized
# data, and the float32 temporaries of the torch fallback of the fused LM head (per tile element).
CPU_FIXED_BYTES = int(0.15 * GIB)
CPU_LOGPROB_TEMPORARIES = 11


@dataclass
class MemoryEstimate:
    """Estimated peak memory of one training process, with where it goes (bytes)."""

    total_bytes: int
    breakdown: dict[str, int]
    device: str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    def fraction_of(self, budget_bytes: int) -> float:
        return self.total_bytes / budget_bytes if budget_bytes else float("inf")


def _dtype_bytes(dtype: Any) -> int:
    name = str(dtype).replace("torch.", "").lower()
    if name not in DTYPE_BYTES:
        raise ValueError(f"Unknown dtype `{dtype}` for the memory estimate; use float32, bfloat16 or float16.")
    return DTYPE_BYTES[name]


def _optimizer_bytes(optim: str, trainable: int, param_bytes: int) -> tuple[int, int]:
    """(states, transient) bytes of the optimizer for `trainable` parameters of `param_bytes` each."""
    optim = str(getattr(optim, "value", optim)).lower()
    if any(tag in optim for tag in EIGHT_BIT_OPTIMIZERS):
        return 2 * trainable, 0
    if optim.startswith("adafactor"):
        return trainable // 64, 0  # factored second moment: rows + columns
    if optim.startswith("sgd"):
        return 0, 0
    if "lion" in optim:
        return trainable * param_bytes, 0
    transient = 0 if "fused" in optim else trainable * param_bytes  # foreach AdamW materialises one update copy
    return 2 * trainable * param_bytes, transient


def estimate_memory(
    model: Any,
    *,
    method: str = "lora",
    max_length: int | None = 1024,
    per_device_train_batch_size: int = 1,
    gradient_checkpointing: bool = True,
    optim: str = "adamw_torch_fused",
    lora_r: int = 16,
    lora_target_modules: Any = "all-linear",
    lora_dropout: float = 0.0,
    dtype: str = "bfloat16",
    weights_dtype: str | None = None,
    double_quant: bool = True,
    packing: bool = False,
    use_liger_kernel: bool = False,
    device: str = "cuda",
    weights_resident: bool = True,
    shard_stage: int = 0,
    shard_processes: int = 1,
    attention: str | None = None,
) -> MemoryEstimate:
    """Estimate the peak memory of SFT on one device (the formula is in the module docstring).

    Args:
        model: what [`model_shape`] accepts.
        method: `"full"`, `"lora"` or `"qlora"`.
        max_length: tokens per sequence; the estimate assumes full-length sequences (packed or padded).
        dtype: compute dtype: `"bfloat16"`/`"float16"` (mixed precision) or `"float32"`.
        weights_dtype: dtype the weights are loaded in; defaults to `dtype`.
        device: `"cuda"`, `"mps"` or `"cpu"` (on CPU: process memory, without the CUDA context).
        weights_resident: count the weights; False when they were loaded before the measurement started.
        shard_stage, shard_processes: per-process memory when ZeRO / FSDP splits model states over
            `shard_processes` processes: stage 1 the optimizer states, 2 also the gradients, 3 (ZeRO-3, FSDP full
            shard) also the weights (`trl_smol.memory.sharding`). Activations are per process.
        attention: the attention implementation (None: transformers' default, `sdpa`). Kernels other than the
            varlen FlashAttention ones hold a mask of every pair of each row; `eager` also its probabilities.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method `{method}`; use one of {', '.join(METHODS)}.")
    shape = model_shape(model)
    b_c, b_w = _dtype_bytes(dtype), _dtype_bytes(weights_dtype or dtype)
    b_c = min(b_c, b_w)  # autocast never computes in a wider type than the weights
    h, i, kv, layers, vocab = (
        shape.hidden_size,
        shape.intermediate_size,
        shape.kv_dim,
        shape.num_hidden_layers,
        shape.vocab_size,
    )
    tokens = max(1, per_device_train_batch_size) * (max_length or 1024)
    P, P_lin = shape.num_parameters, shape.projection_params
    notes: list[str] = []

    # Weights and quantisation.
    quantization = 0
    if method == "qlora":
        weights = P_lin // 2 + (P - P_lin) * b_w
        absmax = P_lin * (1 / 64 + 4 / (64 * 256)) if double_quant else P_lin * 4 / 64
        largest = max(a * b for a, b in shape.projection_shapes().values())
        quantization = int(absmax) + largest * b_c
    else:
        weights = P * b_w
    if b_w == 4 and b_c == 2 and method != "qlora" and not gradient_checkpointing:
        weights += P_lin * b_c
        notes.append("mixed precision over float32 weights: autocast copies of the projections are kept for backward")
    if not weights_resident:
        weights = 0

    # Trainable parameters: adapters or the whole model.
    adapters = gradients = 0
    if method == "full":
        trainable, param_bytes = P, b_w
        gradients = P * b_w
    else:
        trainable = shape.lora_params(lora_r, lora_target_modules)
        param_bytes = 2 if method == "qlora" and b_c == 2 else 4  # TRL casts QLoRA adapters to bf16
        adapters = trainable * param_bytes
        gradients = trainable * param_bytes
    states, transient = _optimizer_bytes(optim, trainable, param_bytes)
    if shard_processes > 1 and shard_stage > 0:
        states, transient = states // shard_processes, transient // shard_processes
        if shard_stage >= 2:
            gradients //= shard_processes
        if shard_stage >= 3:
            weights, quantization, adapters = (part // shard_processes for part in (weights, quantization, adapters))
        notes.append(f"model states sharded over {shard_processes} processes (stage {shard_stage})")
    optimizer = states + transient

    # Activations.
    norms = 2 * (4 * h + b_w * h) if b_w < 4 else 2 * 4 * h
    per_layer = b_c * (5 * h + 3 * kv + 4 * i) + norms
    if method != "full" and lora_dropout > 0:
        per_layer += (b_c + 1) * (6 * h + i)
    if gradient_checkpointing:
        per_token = layers * b_w * h + per_layer + b_c * (2 * h + 2 * i)
    else:
        per_token = layers * per_layer
    if use_liger_kernel:
        per_token = int(per_token * 0.9)  # fused RMSNorm/SwiGLU keep fewer intermediates
    activations = tokens * (per_token + 2 * b_w * h)  # + embedding output and final norm
    if not _varlen(attention):
        # SDPA / eager / flex attention build a boolean mask of every pair of each row (padded or packed rows alike;
        # the plugin's padding-free rows are never longer than the batch's longest sequence); eager also keeps each
        # layer's attention probabilities for the backward (one layer's under checkpointing).
        rows, length = max(1, per_device_train_batch_size), max_length or 1024
        activations += rows * length * length
        if attention == "eager":
            kept = 1 if gradient_checkpointing else layers
            activations += rows * shape.num_attention_heads * length * length * b_c * kept
        notes.append(f"{attention or 'sdpa'} attention: a mask of every pair of each row is counted in activations")

    # Logits and loss: TRL's fused LM head.
    tile = min(tokens, LOGPROB_TOKEN_TILE) * min(vocab, LOGPROB_VOCAB_TILE)
    if device == "cuda":
        logits = tile * b_c
    else:
        logits = tile * 4 * (1 + CPU_LOGPROB_TEMPORARIES)
    logits += tokens * h * (4 + b_c)  # float32 hidden-state gradient, and the selected hidden states
    if method == "full":
        logits += vocab * h * 4  # float32 gradient of the (tied) LM head weight
    if use_liger_kernel:
        notes.append("Liger: TRL turns off its fused linear cross-entropy; the fused LM head is counted instead")

    if method == "full":
        # Full fine-tuning: the loss backward (activations and LM-head temporaries, plus the LM-head gradient) peaks
        # before most gradients exist, and the end of backward / optimizer step (every gradient, the update copy)
        # after the activations are freed. The peak is the larger phase; the other phase's lines show 0.
        backward_start = activations + logits
        step = gradients + transient
        if backward_start >= step:
            gradients, optimizer = 0, states
            notes.append("full fine-tuning peaks in the loss backward: gradients are counted in 'logits and loss'")
        else:
            activations = logits = 0
            notes.append("full fine-tuning peaks at the optimizer step: activations are freed by then")
    subtotal = weights + quantization + adapters + gradients + optimizer + activations + logits
    if device == "cuda":
        overhead = CUDA_CONTEXT_BYTES + int(CUDA_FRAGMENTATION * (subtotal - weights))
    elif device == "mps":
        overhead = int(CUDA_FRAGMENTATION * subtotal)
    else:
        overhead = CPU_FIXED_BYTES
    breakdown = {
        "weights": int(weights),
        "quantization": int(quantization),
        "adapters": int(adapters),
        "gradients": int(gradients),
        "optimizer": int(optimizer),
        "activations": int(activations),
        "logits_and_loss": int(logits),
        "overhead": int(overhead),
    }
    settings = {
        "model": shape.name,
        "parameters": P,
        "trainable_parameters": trainable,
        "method": method,
        "max_length": max_length,
        "per_device_train_batch_size": per_device_train_batch_size,
        "gradient_checkpointing": gradient_checkpointing,
        "optim": str(getattr(optim, "value", optim)),
        "lora_r": lora_r if method != "full" else None,
        "dtype": dtype,
        "weights_dtype": weights_dtype or dtype,
        "packing": packing,
        "use_liger_kernel": use_liger_kernel,
    }
    return MemoryEstimate(sum(breakdown.values()), breakdown, device, settings, notes)


BREAKDOWN_LABELS = {
    "weights": "weights",
    "quantization": "quantisation overhead",
    "adapters": "adapters (LoRA)",
    "gradients": "gradients",
    "optimizer": "optimizer states",
    "activations": "activations",
    "logits_and_loss": "logits and loss",
    "overhead": "framework overhead",
}


def breakdown_table(estimate: MemoryEstimate, title: str = "Memory estimate", budget: int | None = None):
    """A rich table of the breakdown, with the share of each line and, given a budget, the headroom."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("share", justify="right")
    for key, value in estimate.breakdown.items():
        share = value / estimate.total_bytes if estimate.total_bytes else 0
        table.add_row(BREAKDOWN_LABELS.get(key, key), f"{value / GIB:.2f}", f"{share:.0%}")
    table.add_section()
    table.add_row("[bold]total[/bold]", f"[bold]{estimate.total_gib:.2f}[/bold]", "")
    if budget:
        table.add_row("budget", f"{budget / GIB:.2f}", f"{estimate.fraction_of(budget):.0%} used")
    return table


__all__ = [
    "KNOWN_MODELS",
    "METHODS",
    "MemoryEstimate",
    "ModelShape",
    "ModelShapeError",
    "breakdown_table",
    "estimate_memory",
    "model_shape",
]


def _varlen(attention: str | None) -> bool:
    """FlashAttention 2/3 (the package or a Hub kernel) compute each sequence's pairs without a mask."""
    return bool(attention) and ("flash" in attention)
