"""The memory preset's planner over machines the project does not have: the fastest plan that fits, never a batch form
that costs more than padding, the whole device used, and per-process memory under sharding.

Each case plans SmolLM3-3B on a described machine (`trl_smol.memory.devices`) for a method and a length, and the table
of plans is printed (`pytest -s` shows it). The rules hold on every row.
"""

import pytest

from trl_smol import SmolSFTConfig
from trl_smol.data.padding_free import BoundedRowsCollator, is_varlen, padding_free_collator
from trl_smol.memory import GIB, plan_memory_preset
from trl_smol.memory.batching import CHECKPOINTING_MARGIN, NO_CHECKPOINTING_MARGIN
from trl_smol.memory.devices import described_hardware
from trl_smol.memory.kernels import choose_attention
from trl_smol.memory.run_settings import lora_config, qlora_quantization_config
from trl_smol.memory.sharding import Sharding
from trl_smol.settings import UserSettings

SMOLLM3 = "HuggingFaceTB/SmolLM3-3B-Base"
MACHINES = ("h200", "h100-80gb", "a100-80gb", "a100-40gb", "l4", "rtx4090", "t4", "8xh100-80gb", "h100-80gb+fa3")
METHODS = ("qlora", "lora", "full")
LENGTHS = (2048, 8192)


def plan(machine: str, method: str, length: int, sharding: Sharding | None = None):
    args = SmolSFTConfig(output_dir="unused", max_length=length, memory_preset="auto", memory_preset_force=True)
    args.user_settings = UserSettings(explicit=frozenset({"output_dir", "max_length", "memory_preset"}))
    peft = lora_config(16) if method != "full" else None
    quant = qlora_quantization_config("bfloat16") if method == "qlora" else None
    hardware = described_hardware(machine)
    result = plan_memory_preset(
        "auto", args, model_name=SMOLLM3, peft_config=peft, quantization_config=quant, hardware=hardware,
        explicit=args.user_settings.explicit, sharding=sharding,
    )  # fmt: skip
    return hardware, result


CASES = [(machine, method, length) for machine in MACHINES for method in METHODS for length in LENGTHS]


@pytest.mark.parametrize(("machine", "method", "length"), CASES, ids=["-".join(map(str, case)) for case in CASES])
def test_the_plan_is_the_fastest_that_fits_and_uses_the_whole_device(machine, method, length, capsys):
    hardware, result = plan(machine, method, length)
    batch = result.batch
    with capsys.disabled():
        print(f"\n{machine:16} {method:5} {length:5}  micro {batch.micro_batch} x {batch.accumulation}, checkpointing "
              f"{'on ' if batch.gradient_checkpointing else 'off'}  peak {result.estimate.total_gib:6.1f} of "
              f"{result.budget / GIB:6.1f} GiB  {batch.seconds:7.2f} s/step  ({result.method})", end="")  # fmt: skip
    assert result.budget == hardware.device_memory  # the whole device, not the tier's size
    if not batch.fits:
        assert not any(candidate.fits for candidate in batch.candidates)
        assert not result.fits or result.estimate.total_bytes <= result.budget
        return
    margin = CHECKPOINTING_MARGIN if batch.gradient_checkpointing else NO_CHECKPOINTING_MARGIN
    assert result.estimate.total_bytes <= (1 - margin) * result.budget  # never a plan over the device
    fitting = [candidate for candidate in batch.candidates if candidate.fits]
    assert batch.seconds == min(candidate.seconds for candidate in fitting)  # the fastest of those that fit
    # Checkpointing stays on only where no plan without it both fits and is faster.
    if batch.gradient_checkpointing:
        assert not [c for c in fitting if not c.gradient_checkpointing and c.seconds < batch.seconds]


@pytest.mark.parametrize("machine", MACHINES + ("cpu-16",))
def test_no_packed_row_is_longer_than_the_longest_sequence_without_a_varlen_kernel(machine):
    hardware = described_hardware(machine)
    attention, _ = choose_attention(hardware)
    collator = padding_free_collator(0, None, attention)
    assert isinstance(collator, BoundedRowsCollator) is not is_varlen(attention)
    rows = collator([{"input_ids": list(range(1, 2049))}] * 8)["input_ids"]
    assert rows.shape[1] == 2048 if not is_varlen(attention) else rows.shape == (1, 8 * 2048)


def test_on_a_large_gpu_checkpointing_goes_off_where_it_fits():
    _, result = plan("h200", "lora", 2048)
    assert not result.batch.gradient_checkpointing and result.batch.fits  # 140 GiB: no recompute needed


def test_under_zero3_each_process_is_planned_with_its_share_of_the_model_states():
    zero3 = Sharding("deepspeed-zero3", 3, 8)
    _, alone = plan("8xh100-80gb", "full", 8192)
    _, sharded = plan("8xh100-80gb", "full", 8192, zero3)
    assert sharded.estimate.total_bytes < alone.estimate.total_bytes
    assert "weights" in sharded.estimate.breakdown and sharded.sharding == zero3
    faster_or_same = sharded.batch.seconds <= alone.batch.seconds
    assert faster_or_same and sharded.batch.fits
    per_gpu = next(row for row in sharded.rows if row.setting == "per_device_train_batch_size")
    assert "per process under deepspeed-zero3 x8" in per_gpu.reason


def test_qlora_under_zero3_stores_the_4bit_weights_in_the_compute_dtype():
    import torch

    args = SmolSFTConfig(output_dir="unused", memory_preset="8gb", memory_preset_force=True)
    zero3 = Sharding("deepspeed-zero3", 3, 2)
    result = plan_memory_preset("8gb", args, model_name=SMOLLM3, hardware=described_hardware("2xt4"), sharding=zero3)
    quantization = result.quantization_config
    assert result.method == "qlora" and quantization.bnb_4bit_compute_dtype == torch.float16  # a T4 has no bf16
    assert quantization.bnb_4bit_quant_storage == torch.float16
    alone = plan_memory_preset("8gb", args, model_name=SMOLLM3, hardware=described_hardware("2xt4"))
    assert alone.quantization_config.bnb_4bit_quant_storage == torch.uint8  # bitsandbytes' default


def test_trls_default_dtype_is_not_taken_for_the_users():
    """`trl sft` fills `model_init_kwargs.dtype` with ModelConfig's default (float32): the preset loads half-precision
    weights on a GPU unless the recipe itself set `dtype`."""
    args = SmolSFTConfig(output_dir="unused", model_init_kwargs={"dtype": "float32", "attn_implementation": None})
    hardware = described_hardware("l4")
    default = plan_memory_preset("auto", args, model_name=SMOLLM3, hardware=hardware, explicit=frozenset())
    assert default.changes["model_init_kwargs"]["dtype"] == "bfloat16"
    users = plan_memory_preset("auto", args, model_name=SMOLLM3, hardware=hardware, explicit=frozenset({"dtype"}))
    assert "model_init_kwargs" not in users.changes  # the recipe's float32 is kept
    (row,) = [row for row in users.rows if row.setting == "model_init_kwargs.dtype"]
    assert row.status == "kept: explicit" and row.value == "float32"
