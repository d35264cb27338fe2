"""Planning for a machine you do not have (`trl-smol doctor --hardware NAME`), and the kernels a preset loads the model
with: only what runs on the machine without a download (FlashAttention where installed, never a Hub kernel)."""

import argparse
import dataclasses
import types
from pathlib import Path

import pytest
import torch
import yaml
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware

from trl_smol import SmolSFTConfig
from trl_smol import commands as cli
from trl_smol.commands import doctor
from trl_smol.config import UserSettings
from trl_smol.memory import hardware as hardware_module
from trl_smol.memory import plan_memory_preset
from trl_smol.memory.devices import DEVICE_NAMES, UnknownDeviceError, described_hardware
from trl_smol.memory.hardware import GIB, attention_kernels, detect_hardware
from trl_smol.memory.kernels import FLEX_NOT_CHOSEN, attention_support, choose_attention, choose_hub_kernels
from trl_smol.memory.tiers import TIERS, choose_tier
from trl_smol.plan import plan_run

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMOLLM3 = "HuggingFaceTB/SmolLM3-3B-Base"
MACHINES = [*DEVICE_NAMES, "8xh100-80gb"]


def doctor_args(config, hardware, preset=None):
    return argparse.Namespace(
        config=config, preset=preset, model=None, accelerate_config=None, num_processes=None, hardware=hardware
    )


def gpu_args(tmp_path, **kwargs):
    """A recipe run's arguments: only the recipe's keys are explicit (built with bf16=False on this CPU machine)."""
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", **kwargs)
    args.user_settings = UserSettings(explicit=frozenset({"output_dir", "report_to", *kwargs}))
    return args


def rows_by_setting(result):
    return {row.setting: row for row in result.rows}


# --- the catalogue -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["smollm3_lora.yaml", "smollm3_qlora.yaml", "smollm3_full.yaml"])
@pytest.mark.parametrize("name", MACHINES)
def test_every_described_machine_plans_the_recipes_through_doctor(name, recipe, capsys):
    hardware = described_hardware(name)
    config = str(RECIPES / recipe)
    status = doctor.run(doctor_args(config, name))
    out = capsys.readouterr().out
    assert status in (0, 1), out[-3000:]  # a verdict, not an error
    assert f"Planning for a described machine, `{name}`" in out
    verdict = [line for line in out.splitlines() if line.startswith("Verdict")]
    assert verdict == [verdict[0]] and f"Verdict for `{name}` ({hardware.name}, described)" in verdict[0]
    assert "attention: " in out

    recipe_values = yaml.safe_load(Path(config).read_text())
    if hardware.accelerator == "cpu":  # every GPU recipe stops on a CPU machine, as `trl sft` would
        assert "Verdict for `cpu-16` (" in verdict[0] and "does not run here" in verdict[0] and status == 1
        assert "needs a CUDA GPU" in verdict[0] and "recipes/smollm3_demo.yaml" in verdict[0]
        return
    assert "Estimated time:" in out  # the time estimate the recipe headers promise
    if "memory_preset" not in recipe_values:  # no preset: the settings as written, which is what `trl sft` applies
        assert "No memory preset" in out and "Preset `" not in out
        return
    # The same plan as doctor's: `auto` picks this machine's tier, and the plan never exceeds the device.
    args = doctor.recipe_arguments(recipe_values)
    args.memory_preset, args.memory_preset_force = "auto", True
    peft_config, quantization_config = doctor.recipe_peft(recipe_values)
    result = plan_memory_preset(
        "auto", args, model_name=SMOLLM3, peft_config=peft_config, quantization_config=quantization_config,
        hardware=hardware, explicit=frozenset(key for key in recipe_values if hasattr(args, key)),
    )  # fmt: skip
    assert result.tier == choose_tier(hardware)
    assert result.budget <= hardware.device_memory
    assert result.fits == (status == 0) and (not result.fits or result.estimate.total_bytes <= hardware.device_memory)


@pytest.mark.parametrize(
    "name, device, gib, capability, tier",
    [
        ("h100-80gb", "NVIDIA H100 80GB HBM3", 79.10, (9, 0), "80gb"),
        ("a100-40gb", "NVIDIA A100-SXM4-40GB", 39.39, (8, 0), "40gb"),
        ("l4", "NVIDIA L4", 22.03, (8, 9), "24gb"),
        ("rtx4090", "NVIDIA GeForce RTX 4090", 23.64, (8, 9), "24gb"),
        ("t4", "Tesla T4", 14.74, (7, 5), "16gb"),
    ],
)
def test_a_described_gpu_is_what_torch_reports_on_it(name, device, gib, capability, tier):
    hardware = described_hardware(name)
    assert hardware.accelerator == "cuda" and hardware.name == device and hardware.count == 1
    assert hardware.device_memory == int(gib * GIB) < TIERS[tier].capacity  # a little under the nominal size
    assert hardware.compute_capability == capability and hardware.bnb_4bit
    assert hardware.bf16 == (name != "t4")  # Turing has no bf16
    assert choose_tier(hardware) == tier
    assert not hardware.flash_attention  # FlashAttention is a separate install: not assumed


def test_a_name_takes_a_gpu_count_and_what_is_installed():
    eight = described_hardware("8xH100-80GB")
    assert eight.count == 8 and eight.name == "8x NVIDIA H100 80GB HBM3"
    assert eight.host_ram == 8 * described_hardware("h100-80gb").host_ram
    cpu = described_hardware("cpu-16")
    assert cpu.accelerator == "cpu" and cpu.host_ram == 64 * GIB and choose_tier(cpu) == "cpu"
    assert "16 CPU cores" in cpu.notes[0]
    fa3 = described_hardware("h100-80gb+fa3+liger+offline")
    assert "flash_attention_3" in fa3.attention_kernels and fa3.liger_kernel and fa3.hub_offline


@pytest.mark.parametrize(
    "name, message",
    [
        ("h100", "unknown machine `h100`"),
        ("t4+fa2", "FlashAttention 2 needs Ampere or newer"),
        ("a100-80gb+fa3", "FlashAttention 3 needs a Hopper GPU"),
        ("2xcpu-16", "a CPU machine takes no GPU count"),
        ("0xl4", "1 to 64 GPUs"),
        ("l4+fa4", r"unknown option `\+fa4`"),
    ],
)
def test_a_bad_name_fails_with_the_valid_names(name, message):
    with pytest.raises(UnknownDeviceError, match=message) as error:
        described_hardware(name)
    assert all(valid in str(error.value) for valid in DEVICE_NAMES) and "\n" not in str(error.value)


def test_doctor_hardware_flag_plans_for_the_named_machine_and_rejects_an_unknown_one(capsys):
    lora = str(RECIPES / "smollm3_lora.yaml")
    assert cli.main(["doctor", "--config", lora, "--hardware", "l4"]) == 0
    out = capsys.readouterr().out
    assert "No memory preset" in out and "Verdict for `l4` (NVIDIA L4, described): fits with" in out
    assert "Estimated time:" in out and "for 1000 steps" in out

    assert cli.main(["doctor", "--config", lora, "--hardware", "h100"]) == 2
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if "trl-smol doctor: --hardware" in line]
    assert len(errors) == 1 and all(valid in errors[0] for valid in DEVICE_NAMES)


def test_doctor_says_a_bf16_recipe_stops_on_a_gpu_without_bf16(capsys):
    assert doctor.run(doctor_args(str(RECIPES / "smollm3_lora.yaml"), "t4")) == 0
    assert "bf16 on Tesla T4, which has no bf16" in capsys.readouterr().out


# --- the attention kernel ------------------------------------------------------------------------------------------
def installed(*present):
    """A stand-in for `hardware._package`: only the (module, distribution) pairs in `present` are installed."""
    return lambda module, distribution: (module, distribution) in present


FA2 = ("flash_attn", "flash-attn")
FA3 = ("flash_attn_interface", "flash-attn-3")


def test_smollm3_supports_flash_sdpa_and_flex_in_transformers():
    assert attention_support("smollm3") == {"flash", "sdpa", "flex"}
    assert attention_support("no-such-model") == {"sdpa"}


@pytest.mark.parametrize(
    "accelerator, capability, present, expected",
    [
        ("cuda", (9, 0), [FA3, FA2], "flash_attention_3"),  # Hopper with FA3
        ("cuda", (9, 0), [FA2], "flash_attention_2"),
        ("cuda", (8, 0), [FA2, FA3], "flash_attention_2"),  # FA3 is for Hopper
        ("cuda", (8, 9), [], "sdpa"),  # `kernels` alone: a Hub kernel would be a download
        ("cuda", (7, 5), [FA2], "sdpa"),  # FlashAttention 2 needs Ampere
        ("cpu", None, [FA2, FA3], "sdpa"),
    ],
)
def test_the_attention_kernel_is_one_whose_package_runs_here(monkeypatch, accelerator, capability, present, expected):
    monkeypatch.setattr(hardware_module, "_package", installed(*present))
    kernels = attention_kernels(accelerator, capability)
    assert {"sdpa", "eager"} <= set(kernels)
    base = fake_cuda_hardware(80, compute_capability=capability) if accelerator == "cuda" else fake_cpu_hardware()
    assert choose_attention(dataclasses.replace(base, attention_kernels=kernels))[0] == expected


def fake_cuda_torch(monkeypatch, name="NVIDIA A100-SXM4-80GB", major=8, minor=0):
    props = types.SimpleNamespace(name=name, total_memory=80 * GIB, major=major, minor=minor)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (80 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_an_offline_gpu_with_only_kernels_gets_sdpa_and_no_hub_kernels(monkeypatch, tmp_path):
    """The issue's case: `kernels` installed (as transformers 5.25 installs it), no flash-attn, HF_HUB_OFFLINE."""
    args = gpu_args(tmp_path)  # before torch pretends to have a GPU
    fake_cuda_torch(monkeypatch)
    monkeypatch.setattr(hardware_module, "_package", installed())
    monkeypatch.setattr(hardware_module, "hub_kernels_installed", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hardware = detect_hardware()
    assert hardware.hub_kernels and hardware.hub_offline and not hardware.flash_attention
    assert choose_attention(hardware) == ("sdpa", "no flash-attn package installed; the Hub is offline")

    result = plan_memory_preset("auto", args, model_name=SMOLLM3, hardware=hardware)
    rows = rows_by_setting(result)
    assert "model_init_kwargs.attn_implementation" not in rows
    assert result.changes["model_init_kwargs"]["use_kernels"] is False  # the default Hub kernels would stop the load
    assert "use_liger_kernel" not in result.changes


def test_detection_finds_flash_attention_3_on_hopper(monkeypatch, tmp_path):
    args = gpu_args(tmp_path)
    fake_cuda_torch(monkeypatch, name="NVIDIA H100 80GB HBM3", major=9, minor=0)
    monkeypatch.setattr(hardware_module, "_package", installed(FA2, FA3))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    hardware = detect_hardware()
    assert {"flash_attention_2", "flash_attention_3"} <= set(hardware.attention_kernels) and not hardware.hub_offline
    result = plan_memory_preset("auto", args, model_name=SMOLLM3, hardware=hardware)
    assert result.changes["model_init_kwargs"]["attn_implementation"] == "flash_attention_3"


def test_the_preset_picks_flash_attention_even_when_trl_sft_passes_none(tmp_path):
    """`trl sft` builds model_init_kwargs with `attn_implementation: None` for a recipe without it."""
    args = gpu_args(tmp_path)
    args.model_init_kwargs = {"revision": "main", "attn_implementation": None, "dtype": None}
    flash = fake_cuda_hardware(24, flash_attention=True)
    result = plan_memory_preset("24gb", args, model_name=SMOLLM3, hardware=flash)
    assert result.changes["model_init_kwargs"]["attn_implementation"] == "flash_attention_2"
    assert rows_by_setting(result)["model_init_kwargs.attn_implementation"].reason == "flash-attn installed"

    mine = gpu_args(tmp_path, model_init_kwargs={"attn_implementation": "eager"})
    kept = plan_memory_preset("24gb", mine, model_name=SMOLLM3, hardware=flash)
    assert kept.changes.get("model_init_kwargs", {}).get("attn_implementation", "eager") == "eager"


def test_liger_goes_through_trls_hub_kernels_path_only_where_the_hub_is_reachable(tmp_path):
    online = fake_cuda_hardware(24, liger_kernel=True)
    result = plan_memory_preset("24gb", gpu_args(tmp_path), model_name=SMOLLM3, hardware=online)
    assert result.changes["model_init_kwargs"]["use_kernels"] is True  # TRL 1.16: model_init_kwargs.use_kernels
    assert "use_liger_kernel" not in result.changes  # deprecated in TRL 1.16
    assert choose_hub_kernels(fake_cuda_hardware(24, liger_kernel=True, hub_offline=True))[0] is False
    assert choose_hub_kernels(fake_cuda_hardware(24)) is None  # no Liger, Hub online: transformers' default
    assert choose_hub_kernels(fake_cpu_hardware()) is None


# --- the banner names the kernel ------------------------------------------------------------------------------------
def test_the_banner_names_the_attention_kernel_the_preset_chose(tmp_path):
    plan = plan_run(gpu_args(tmp_path, memory_preset="24gb"), model_name=SMOLLM3,
                    hardware=fake_cuda_hardware(24, flash_attention=True))  # fmt: skip
    assert plan.features()["attention"] == "flash_attention_2 (flash-attn installed)"
    assert "attention=flash_attention_2 (flash-attn installed)" in plan.banner()

    plan = plan_run(gpu_args(tmp_path, memory_preset="24gb"), model_name=SMOLLM3, hardware=fake_cuda_hardware(24))
    assert plan.features()["attention"].startswith("sdpa (no flash-attn package installed")

    plan = plan_run(gpu_args(tmp_path, memory_preset="cpu"), model_name=SMOLLM3, hardware=fake_cpu_hardware(64))
    assert plan.features()["attention"] == "sdpa (transformers' default; memory preset cpu)"


def test_the_banner_names_the_users_kernel_and_stays_quiet_with_plugin_settings_off(tmp_path):
    plan = plan_run(SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none"))
    assert "attention" not in plan.features() and plan["attention"].value == "sdpa"

    args = gpu_args(tmp_path, model_init_kwargs={"attn_implementation": "flash_attention_2"})
    plan = plan_run(args, model_name=SMOLLM3, hardware=fake_cuda_hardware(24, hub_offline=True))
    assert plan.features()["attention"] == "flash_attention_2 (set in the recipe or command line)"
    assert "Hub kernel" in plan["attention"].warning and "the model load will fail" in plan["attention"].warning


def test_flex_attention_is_explained_not_chosen():
    hardware = described_hardware("h100-80gb")
    assert "flex_attention" in hardware.attention_kernels and "flex" in attention_support("smollm3")
    assert choose_attention(hardware)[0] == "sdpa" and "torch.compile" in FLEX_NOT_CHOSEN
