"""Memory presets: hardware detection, the tier table, "explicit wins", budgets, and out-of-memory handling."""

import types

import pytest
import torch
from datasets import Dataset
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware
from peft import LoraConfig
from transformers import BitsAndBytesConfig
from transformers.training_args import OptimizerNames
from trl.trainer.sft_trainer import SFTTrainer

from trl_smol import SmolSFTConfig, SmolSFTTrainer
from trl_smol.config import UserSettings
from trl_smol.memory import (
    PRESET_NAMES,
    PROJECTIONS,
    TIERS,
    MemoryBudgetError,
    ModelShapeError,
    PresetOutOfMemoryError,
    UnknownPresetError,
    apply_memory_preset,
    choose_tier,
    next_smaller_tier,
    out_of_memory_message,
    plan_memory_preset,
)
from trl_smol.memory.hardware import GIB, HardwareInfo, detect_hardware

SMOLLM3 = "HuggingFaceTB/SmolLM3-3B-Base"


def cpu_args(tmp_path, **kwargs):
    return SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", **kwargs)


def gpu_args(tmp_path, **kwargs):
    """Arguments as a recipe run on a GPU would have them: only the recipe's keys are explicit, so `bf16` is not.

    (They are built with bf16=False, because TrainingArguments refuses bf16 on this CPU-only test machine.)
    """
    args = cpu_args(tmp_path, **kwargs)
    args.user_settings = UserSettings(explicit=frozenset({"output_dir", "report_to", *kwargs}))
    return args


def rows_by_setting(result):
    return {row.setting: row for row in result.rows}


# --- detection -----------------------------------------------------------------------------------------------------
def test_detect_hardware_reads_faked_cuda_devices(monkeypatch):
    props = types.SimpleNamespace(name="NVIDIA GeForce RTX 3070", total_memory=8 * GIB, major=8, minor=6)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (6 * GIB, 8 * GIB))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    hardware = detect_hardware()
    assert hardware.accelerator == "cuda" and hardware.count == 2
    assert hardware.name == "2x NVIDIA GeForce RTX 3070"
    assert hardware.device_memory == 8 * GIB and hardware.free_device_memory == 6 * GIB
    assert hardware.bf16 and hardware.compute_capability == (8, 6)
    assert hardware.host_ram > 0
    assert choose_tier(hardware) == "8gb"


def test_detect_hardware_reads_faked_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 12 * GIB, raising=False)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 2 * GIB, raising=False)
    hardware = detect_hardware()
    assert hardware.accelerator == "mps"
    assert hardware.device_memory == 12 * GIB and hardware.free_device_memory == 10 * GIB
    assert not hardware.bnb_4bit and not hardware.flash_attention


def test_detect_hardware_without_accelerator_is_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    hardware = detect_hardware()
    assert hardware.accelerator == "cpu" and hardware.device_memory == hardware.host_ram
    assert choose_tier(hardware) == "cpu"


@pytest.mark.parametrize(
    ("gib", "tier"),
    [(6.0, "8gb"), (7.79, "8gb"), (11.7, "12gb"), (14.58, "16gb"), (23.6, "24gb"), (39.4, "40gb"), (79.1, "80gb")],
)
def test_auto_picks_the_largest_tier_the_device_holds(gib, tier):
    # Devices report a little less than their nominal size (a 16 GB T4 shows 14.58 GiB).
    assert choose_tier(fake_cuda_hardware(gib)) == tier


def test_unknown_preset_lists_the_valid_names(tmp_path):
    with pytest.raises(UnknownPresetError) as error:  # when the arguments are built, before any planning
        cpu_args(tmp_path, memory_preset="9gb")
    for name in PRESET_NAMES:
        assert name in str(error.value)


def args_accumulation(result):
    return result.estimate.settings.get("gradient_accumulation_steps") or result.changes.get(
        "gradient_accumulation_steps", 1
    )


# --- the tier table ------------------------------------------------------------------------------------------------
def test_8gb_tier_is_qlora_with_paged_8bit_adam_and_leaves_headroom(tmp_path):
    result = plan_memory_preset("8gb", gpu_args(tmp_path), model_name=SMOLLM3, hardware=fake_cuda_hardware(8))
    assert result.method == "qlora"
    assert isinstance(result.peft_config, LoraConfig)
    assert set(result.peft_config.target_modules) == set(PROJECTIONS)
    assert result.peft_config.task_type == "CAUSAL_LM"
    quant = result.quantization_config
    assert isinstance(quant, BitsAndBytesConfig)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    assert result.changes["optim"] == "paged_adamw_8bit"
    # TRL's 8 rows per step, in the largest micro-batch that fits 8 GB
    assert result.estimate.settings["per_device_train_batch_size"] * args_accumulation(result) == 8
    assert result.changes["max_length"] == 2048
    assert result.changes["bf16"] is True
    assert result.changes["model_init_kwargs"] == {"dtype": "bfloat16"}
    assert result.fits and result.fraction <= 0.9  # at least 10% headroom by the estimate


def test_16gb_tier_is_bf16_lora_with_headroom(tmp_path):
    result = plan_memory_preset("16gb", gpu_args(tmp_path), model_name=SMOLLM3, hardware=fake_cuda_hardware(16))
    assert result.method == "lora" and result.quantization_config is None
    assert "optim" not in result.changes  # fused AdamW is already transformers' default
    assert result.estimate.settings["optim"] == "adamw_torch_fused"
    assert result.changes["model_init_kwargs"] == {"dtype": "bfloat16"}
    assert result.fits and result.fraction <= 0.9


@pytest.mark.parametrize("tier", ["8gb", "12gb", "16gb", "24gb", "40gb", "80gb"])
def test_every_gpu_tier_fits_smollm3_on_its_own_device(tmp_path, tier):
    hardware = fake_cuda_hardware(TIERS[tier].gib)
    result = plan_memory_preset(tier, gpu_args(tmp_path), model_name=SMOLLM3, hardware=hardware)
    assert result.method == TIERS[tier].method
    assert result.fits, result.verdict
    # the tier sizes the budget; the micro-batch is the largest of TRL's 8 rows per step that fits it
    micro = result.estimate.settings["per_device_train_batch_size"]
    assert micro * args_accumulation(result) == 8
    assert micro >= TIERS[tier].per_device_train_batch_size or TIERS[tier].per_device_train_batch_size > 8


def test_full_fine_tuning_tiers_choose_the_load_dtype(tmp_path):
    forty = plan_memory_preset("40gb", gpu_args(tmp_path), model_name=SMOLLM3, hardware=fake_cuda_hardware(40))
    eighty = plan_memory_preset("80gb", gpu_args(tmp_path), model_name=SMOLLM3, hardware=fake_cuda_hardware(80))
    assert forty.peft_config is None and forty.changes["model_init_kwargs"] == {"dtype": "bfloat16"}
    assert forty.changes["optim"] == "adamw_8bit"
    # float32 master weights: TRL's default load dtype, so nothing to add
    assert eighty.peft_config is None and "model_init_kwargs" not in eighty.changes
    assert eighty.estimate.settings["weights_dtype"] == "float32"


def test_gpu_without_bf16_uses_fp16(tmp_path):
    t4 = fake_cuda_hardware(14.58, name="Tesla T4", bf16=False, compute_capability=(7, 5))
    result = plan_memory_preset("auto", gpu_args(tmp_path), model_name=SMOLLM3, hardware=t4)
    assert result.tier == "16gb"
    assert result.changes["fp16"] is True and "bf16" not in result.changes  # already False here
    assert result.changes["model_init_kwargs"] == {"dtype": "float16"}


def test_qlora_without_bitsandbytes_falls_back_to_lora(tmp_path):
    hardware = HardwareInfo(**{**fake_cuda_hardware(8).__dict__, "bnb_4bit": False})
    result = plan_memory_preset("8gb", gpu_args(tmp_path), model_name=SMOLLM3, hardware=hardware)
    assert result.method == "lora" and result.quantization_config is None
    assert rows_by_setting(result)["method"].status == "unavailable"


def test_tiers_step_down_in_order():
    assert next_smaller_tier("24gb") == "16gb"
    assert next_smaller_tier("8gb") is None and next_smaller_tier("cpu") is None


# --- explicit wins -------------------------------------------------------------------------------------------------
def test_explicit_settings_are_kept_and_the_effective_batch_too(tmp_path):
    args = gpu_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=4, optim="adamw_torch")
    result = plan_memory_preset("8gb", args, model_name=SMOLLM3, hardware=fake_cuda_hardware(8))
    rows = rows_by_setting(result)
    assert "per_device_train_batch_size" not in result.changes and "optim" not in result.changes
    assert "gradient_accumulation_steps" not in result.changes
    assert rows["optim"].status == "kept: explicit" and rows["optim"].value == "adamw_torch"
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16


def test_preset_keeps_the_recipe_effective_batch_when_only_accumulation_is_set(tmp_path):
    args = gpu_args(tmp_path, gradient_accumulation_steps=4)  # x default batch 8 = 32
    result = plan_memory_preset("16gb", args, model_name=SMOLLM3, hardware=fake_cuda_hardware(16))
    # the split is the recipe's (8 x 4): neither number changes, and the estimate judges it
    assert "per_device_train_batch_size" not in result.changes
    assert "gradient_accumulation_steps" not in result.changes


def test_parser_record_of_explicit_fields_wins_over_defaults(tmp_path):
    args = cpu_args(tmp_path)
    args.user_settings = UserSettings(explicit=frozenset({"max_length", "output_dir"}))
    result = plan_memory_preset("8gb", args, model_name=SMOLLM3, hardware=fake_cuda_hardware(8))
    assert "max_length" not in result.changes  # the recipe said 1024, even though it is TRL's default
    assert result.changes["optim"] == "paged_adamw_8bit"  # what the recipe left unset is the tier's


def test_caller_peft_config_is_never_replaced(tmp_path):
    mine = LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
    result = plan_memory_preset(
        "8gb", gpu_args(tmp_path), model_name=SMOLLM3, peft_config=mine, hardware=fake_cuda_hardware(8)
    )
    assert result.peft_config is mine and result.quantization_config is None
    assert result.method == "lora" and rows_by_setting(result)["method"].status == "kept: explicit"


def test_explicit_settings_that_cannot_fit_stop_the_run_unless_forced(tmp_path, capsys):
    args = gpu_args(tmp_path, max_length=32768, per_device_train_batch_size=8, memory_preset="8gb")
    with pytest.raises(MemoryBudgetError, match="per_device_train_batch_size|max_length"):
        apply_memory_preset(args, model_name=SMOLLM3, hardware=fake_cuda_hardware(8))
    table = capsys.readouterr().out
    assert "breaks the budget" in table
    forced = gpu_args(tmp_path, max_length=32768, per_device_train_batch_size=8, memory_preset="8gb")
    forced.memory_preset_force = True
    result = apply_memory_preset(forced, model_name=SMOLLM3, hardware=fake_cuda_hardware(8), print_table=False)
    assert not result.fits and result.culprits


def test_gpu_tier_on_a_cpu_machine_is_refused(tmp_path):
    args = cpu_args(tmp_path, memory_preset="16gb")
    with pytest.raises(MemoryBudgetError, match="no GPU"):
        apply_memory_preset(args, model_name=SMOLLM3, hardware=fake_cpu_hardware())


def test_unreadable_model_names_what_to_pass(tmp_path):
    args = cpu_args(tmp_path, memory_preset="16gb")
    with pytest.raises(ModelShapeError, match="local checkpoint"):
        apply_memory_preset(args, model_name="someone/uncached-model", hardware=fake_cuda_hardware(16))


def test_applied_changes_update_the_fields_transformers_derived(tmp_path):
    args = cpu_args(tmp_path, memory_preset="8gb", gradient_checkpointing=False)
    args.user_settings = UserSettings(explicit=frozenset({"output_dir", "bf16", "report_to", "memory_preset"}))
    apply_memory_preset(args, model_name=SMOLLM3, hardware=fake_cuda_hardware(8), print_table=False)
    assert args.optim == OptimizerNames.PAGED_ADAMW_8BIT
    assert args.gradient_checkpointing is True and args.activation_checkpointing is True
    assert args.bf16 is False and args.mixed_precision == "no"  # bf16 was explicit


# --- end to end on CPU ---------------------------------------------------------------------------------------------
def token_rows(n, length=24):
    generator = torch.Generator().manual_seed(0)
    return Dataset.from_list([{"input_ids": torch.randint(20, 500, (length,), generator=generator).tolist()}
                              for _ in range(n)])  # fmt: skip


def test_cpu_tier_end_to_end_changes_take_effect(tmp_path, tiny_model_dir, tiny_tokenizer, capsys, monkeypatch):
    seen = inject_oom(monkeypatch, failures=0)  # records each micro-batch's size
    args = cpu_args(tmp_path, memory_preset="cpu", max_steps=1, save_strategy="no", logging_steps=1)
    trainer = SmolSFTTrainer(
        model=tiny_model_dir, args=args, train_dataset=token_rows(16), processing_class=tiny_tokenizer
    )
    out = capsys.readouterr().out
    assert "memory preset `cpu`" in out and "smol_padding_free" in out
    assert trainer.run_plan.preset.tier == "cpu"
    # LoRA created by the preset, on all seven projections (parameters named like `...q_proj.lora_A.default.weight`)
    names = [name for name, _ in trainer.model.named_parameters() if "lora_A" in name]
    assert {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name in names} == set(PROJECTIONS)
    assert any(type(cb).__name__ == "MemoryMonitorCallback" for cb in trainer.callback_handler.callbacks)
    trainer.train()
    # One optimizer step = TRL's 8 rows, in one padding-free micro-batch (the tiny model fits easily): the preset's
    # batch split took effect, without recomputing activations.
    assert seen == [8] and trainer.state.global_step == 1
    assert trainer.args.gradient_checkpointing is False and "position_ids" in trainer.data_collator(
        [{"input_ids": [5, 6]}]
    )
    assert trainer.optimizer.optimizer.defaults.get("fused") is True  # adamw_torch_fused
    assert "measured/estimate" in capsys.readouterr().out


# --- out of memory -------------------------------------------------------------------------------------------------
def inject_oom(monkeypatch, failures=1):
    """Make the first `failures` training steps raise CUDA's out-of-memory error; record each step's batch size."""
    original = SFTTrainer.training_step
    seen = []

    def training_step(self, model, inputs, *args, **kwargs):
        packed = "attention_mask" not in inputs  # padding-free: one row, a sequence starts at each position 0
        seen.append(int((inputs["position_ids"] == 0).sum()) if packed else inputs["input_ids"].shape[0])
        if len(seen) <= failures:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", training_step)
    return seen


def test_out_of_memory_message_names_peak_estimate_and_smaller_preset(tmp_path):
    args = gpu_args(tmp_path, memory_preset="16gb")
    result = apply_memory_preset(args, model_name=SMOLLM3, hardware=fake_cuda_hardware(16), print_table=False)
    message = out_of_memory_message(args, torch.OutOfMemoryError("CUDA out of memory."), result)
    assert "Measured peak" in message and "GiB" in message
    assert "Estimate under memory_preset=16gb" in message and "memory_preset=12gb" in message


def test_out_of_memory_in_training_is_explained(tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch):
    inject_oom(monkeypatch)
    args = cpu_args(tmp_path, memory_preset="cpu", max_steps=1, save_strategy="no")
    trainer = SmolSFTTrainer(
        model=tiny_model_dir, args=args, train_dataset=token_rows(16), processing_class=tiny_tokenizer
    )
    with pytest.raises(PresetOutOfMemoryError, match="Measured peak RSS.*Estimate under memory_preset=cpu") as error:
        trainer.train()
    assert isinstance(error.value.__cause__, torch.OutOfMemoryError)


def test_auto_preset_retries_at_half_batch_and_double_accumulation(
    tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch
):
    seen = inject_oom(monkeypatch)
    args = cpu_args(
        tmp_path, memory_preset="auto", auto_find_batch_size=True, per_device_train_batch_size=4, max_steps=1,
        save_strategy="no",
    )  # fmt: skip
    trainer = SmolSFTTrainer(
        model=tiny_model_dir, args=args, train_dataset=token_rows(16), processing_class=tiny_tokenizer
    )
    assert args.gradient_accumulation_steps == 1  # the recipe's effective batch: 4 x 1
    trainer.train()
    assert seen[0] == 4 and set(seen[1:]) == {2}  # the failed step at 4, then micro-batches of 2
    assert trainer._train_batch_size == 2 and args.gradient_accumulation_steps == 2
    assert len(seen[1:]) == 2 and trainer.state.global_step == 1  # one optimizer step of 2 x 2 = 4 rows


def test_without_a_preset_out_of_memory_errors_stay_stock(tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch):
    inject_oom(monkeypatch)
    args = cpu_args(tmp_path, max_steps=1, save_strategy="no")
    trainer = SmolSFTTrainer(
        model=tiny_model_dir, args=args, train_dataset=token_rows(16), processing_class=tiny_tokenizer
    )
    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate"):
        trainer.train()


def test_four_bit_without_a_bitsandbytes_backend_fails_before_loading_naming_what_works(
    monkeypatch, tiny_model_dir, chat_rows, tmp_path
):
    import bitsandbytes.functional
    from datasets import Dataset
    from transformers import BitsAndBytesConfig

    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    def no_backend(*args, **kwargs):
        raise NotImplementedError("no 4-bit kernel for this device")

    monkeypatch.setattr(bitsandbytes.functional, "quantize_4bit", no_backend)
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none")
    with pytest.raises(RuntimeError, match=r"cannot quantize to 4-bit.*no 4-bit kernel.*memory_preset: auto"):
        SmolSFTTrainer(
            model=tiny_model_dir,
            args=args,
            train_dataset=Dataset.from_list(chat_rows),
            quantization_config=BitsAndBytesConfig(load_in_4bit=True),
        )
