"""`trl-smol doctor` and `trl-smol estimate`: what they print and their exit status."""

import argparse
import json

import pytest
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware

from trl_smol import commands as cli
from trl_smol.commands import doctor
from trl_smol.memory import PRESET_NAMES, estimate_memory


def doctor_args(config=None, preset=None, model=None):
    return argparse.Namespace(config=config, preset=preset, model=model)


def write_recipe(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_estimate_prints_the_estimator_breakdown_as_json(capsys):
    argv = ["estimate", "--model", "HuggingFaceTB/SmolLM3-3B-Base", "--method", "qlora", "--max-length", "4096"]
    assert cli.main([*argv, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    expected = estimate_memory(
        "HuggingFaceTB/SmolLM3-3B-Base", method="qlora", max_length=4096, optim="paged_adamw_8bit"
    )
    assert payload["total_bytes"] == expected.total_bytes
    assert payload["breakdown"] == expected.breakdown
    assert payload["settings"]["parameters"] == 3_075_098_624


def test_estimate_table_and_budget_verdict(capsys):
    argv = ["estimate", "--model", "HuggingFaceTB/SmolLM3-3B", "--method", "full", "--max-length", "4096"]
    assert cli.main([*argv, "--budget-gib", "16"]) == 1
    out = capsys.readouterr().out
    assert "optimizer states" in out and "does not fit in 16.0 GiB" in out
    assert cli.main([*argv, "--budget-gib", "80"]) == 0


def test_estimate_with_an_unreadable_model_says_to_pass_a_local_path(capsys):
    assert cli.main(["estimate", "--model", "nobody/uncached-model"]) == 2
    assert "local checkpoint directory" in capsys.readouterr().out


def test_doctor_on_this_machine_shows_hardware_preset_and_verdict(capsys):
    status = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "Hardware" in out and "accelerator" in out
    assert "Estimated peak memory" in out and "Verdict:" in out
    assert status == (0 if "Verdict: fits" in out else 1)


def test_doctor_plans_a_gpu_recipe_for_faked_hardware(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base\nmemory_preset: auto\n")
    assert doctor.run(doctor_args(recipe), hardware=fake_cuda_hardware(16, name="NVIDIA RTX 4080")) == 0
    out = capsys.readouterr().out
    assert "NVIDIA RTX 4080" in out and "Preset `16gb`" in out and "Verdict: fits with" in out


def test_doctor_names_the_explicit_setting_that_breaks_the_budget(tmp_path, capsys):
    recipe = write_recipe(
        tmp_path,
        "model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base\nmemory_preset: 8gb\nmax_length: 32768\n"
        "per_device_train_batch_size: 8\n",
    )
    assert doctor.run(doctor_args(recipe), hardware=fake_cuda_hardware(8)) == 1
    out = capsys.readouterr().out
    assert "breaks the budget" in out and "Verdict: does not fit" in out
    assert "max_length" in out


def test_doctor_suggests_a_smaller_preset_when_nothing_explicit_is_to_blame(tmp_path, capsys):
    # A 24 GB tier on a device that only has 8 GiB: even a micro-batch of 1 does not fit, no explicit setting is to
    # blame, so the next smaller tier is named.
    assert doctor.run(doctor_args(preset="24gb"), hardware=fake_cuda_hardware(8)) == 1
    assert "try memory_preset=16gb" in capsys.readouterr().out


def test_doctor_reads_lora_settings_from_the_recipe(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "use_peft: true\nlora_r: 64\nload_in_4bit: true\n")
    assert doctor.run(doctor_args(recipe, preset="16gb"), hardware=fake_cuda_hardware(16)) == 0
    out = capsys.readouterr().out
    assert "qlora" in out and "kept: explicit" in out  # the recipe's QLoRA wins over the tier's LoRA


@pytest.mark.parametrize(
    ("recipe_text", "message"),
    [("memory_preset: 9gb\n", "Unknown memory_preset `9gb`"), ("- a\n- list\n", "not a mapping")],
)
def test_doctor_bad_input_is_named(tmp_path, capsys, recipe_text, message):
    recipe = write_recipe(tmp_path, recipe_text)
    assert doctor.run(doctor_args(recipe), hardware=fake_cuda_hardware(16)) == 2
    out = capsys.readouterr().out
    assert message in out
    if "9gb" in message:
        assert all(name in out for name in PRESET_NAMES)


def test_doctor_missing_recipe_file(tmp_path, capsys):
    assert doctor.run(doctor_args(str(tmp_path / "nope.yaml")), hardware=fake_cpu_hardware()) == 2
    assert "cannot read recipe" in capsys.readouterr().out


@pytest.mark.parametrize("native", [False, True])
def test_doctor_warns_that_a_recipe_as_written_trains_in_emulated_bf16_on_this_cpu(
    tmp_path, capsys, monkeypatch, native
):
    # TRL's default `bf16: true` with `use_cpu: true` trains with bf16 autocast on the CPU, which most CPUs emulate.
    import trl_smol.memory.hardware

    monkeypatch.setattr(trl_smol.memory.hardware, "cpu_has_native_bf16", lambda: native)
    recipe = write_recipe(tmp_path, "model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base\nuse_cpu: true\n")
    doctor.run(doctor_args(recipe))
    out = capsys.readouterr().out
    assert ("As written: bf16 autocast on a CPU without native bf16" in out) is not native
    if not native:
        assert "`bf16: false`" in " ".join(out.split())
    # with `bf16: false`, or with a preset deciding the precision, there is nothing to warn about
    for text in ("bf16: false\n", "memory_preset: auto\n"):
        recipe = write_recipe(tmp_path, f"model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base\nuse_cpu: true\n{text}")
        doctor.run(doctor_args(recipe))
        assert "As written" not in capsys.readouterr().out
