"""The `trl-smol` commands check their input: a bad flag is an argparse error naming it, a bad recipe fails as
`trl sft` would, and the verdicts follow what the run would do on this machine."""

import argparse
import dataclasses
import json

import pytest
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware

from trl_smol.commands import doctor, main
from trl_smol.parser import UnknownRecipeKeyError

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
BAD_ROLE = {"messages": [{"role": "bot", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def exits_with_argparse_error(capsys, argv) -> str:
    """Run `trl-smol argv`; it must stop with exit status 2. Returns the last line it printed."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- trl-smol estimate ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-length", "-4096", "max_length=-4096 is not valid; use a whole number >= 1, or null (no truncation)."),
        ("--max-length", "0", "max_length=0 is not valid; use a whole number >= 1, or null (no truncation)."),
        ("--batch-size", "-2", "per_device_train_batch_size=-2 is not valid; use a whole number >= 1."),
        ("--batch-size", "two", "per_device_train_batch_size='two' is not valid; use a whole number >= 1."),
        ("--lora-r", "0", "lora_r=0 is not valid; use a whole number >= 1."),
        ("--lora-dropout", "1", "lora_dropout=1.0 is not valid; use a number >= 0 and < 1."),
        ("--lora-dropout", "-0.1", "lora_dropout=-0.1 is not valid; use a number >= 0 and < 1."),
        ("--optim", "adamw_torch_fusd", "optim='adamw_torch_fusd' is not valid (did you mean 'adamw_torch_fused'?)"),
    ],
)
def test_estimate_rejects_a_flag_as_trl_sft_rejects_its_recipe_key(capsys, flag, value, message):
    # the flags that stand for recipe keys are checked by the same rules, with the same one line
    assert main(["estimate", flag, value]) == 2
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"trl-smol estimate: {message}")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--budget-gib", "-16", "expected a number above 0, got -16"),
        ("--budget-gib", "nan", "expected a number above 0, got 'nan'"),
    ],
)
def test_estimate_rejects_a_budget_out_of_range_naming_the_flag(capsys, flag, value, message):
    last_line = exits_with_argparse_error(capsys, ["estimate", flag, value])
    assert last_line == f"trl-smol estimate: error: argument {flag}: {message}"


def test_estimate_accepts_the_edges_of_each_range(capsys):
    argv = ["estimate", "--max-length", "1", "--batch-size", "1", "--lora-r", "1", "--lora-dropout", "0", "--json"]
    assert main([*argv, "--budget-gib", "0.5"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["total_bytes"] > 0


# --- trl-smol doctor ------------------------------------------------------------------------------------------------


def doctor_args(config=None, preset=None):
    return argparse.Namespace(config=config, preset=preset, model=None)


def test_doctor_fails_on_a_mistyped_key_with_the_message_of_trl_sft(tmp_path, capsys):
    from trl_smol.commands.arguments import recipe_parser

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base\nlerning_rate: 1.0e-4\n")
    with pytest.raises(UnknownRecipeKeyError) as trl_sft_error:  # what `trl sft --config recipe.yaml` raises
        recipe_parser().parse_args_and_config(["--config", str(recipe)])
    assert doctor.run(doctor_args(str(recipe)), hardware=fake_cuda_hardware(16)) == 2
    out = capsys.readouterr().out
    assert f"trl-smol doctor: {trl_sft_error.value}" in " ".join(out.split())
    assert "Did you mean `learning_rate`?" in out and "Verdict" not in out


def test_doctor_rejects_a_preset_that_does_not_exist(capsys):
    last_line = exits_with_argparse_error(capsys, ["doctor", "--preset", "9gb"])
    assert last_line.startswith("trl-smol doctor: error: argument --preset: invalid choice: '9gb' (choose from")
    assert "'auto'" in last_line and "'16gb'" in last_line


QLORA_RECIPE = "model_name_or_path: HuggingFaceTB/SmolLM3-3B-Base\nuse_peft: true\nload_in_4bit: true\n"


def test_qlora_where_bitsandbytes_has_no_4bit_backend_does_not_run_here(tmp_path, capsys):
    recipe = tmp_path / "qlora.yaml"
    recipe.write_text(QLORA_RECIPE)
    no_4bit = dataclasses.replace(fake_cuda_hardware(16), bnb_4bit=False)
    assert doctor.run(doctor_args(str(recipe)), hardware=no_4bit) == 1
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert verdict.startswith(
        f"Verdict: does not run here: recipe {recipe} loads 4-bit weights (`load_in_4bit: true`)"
    )
    assert "no 4-bit backend for this hardware" in verdict and "set `memory_preset: auto`" in verdict

    assert doctor.run(doctor_args(str(recipe)), hardware=fake_cuda_hardware(16)) == 0  # with a 4-bit backend


def test_on_this_machine_doctor_tries_bitsandbytes_as_the_trainer_does(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "qlora.yaml"  # on the CPU on purpose (`use_cpu`), so that a CUDA GPU is not what it lacks
    recipe.write_text(
        "model_name_or_path: trl-smol/SmolLM3-demo-135M\nuse_peft: true\nload_in_4bit: true\nuse_cpu: true\n"
    )
    error = "RuntimeError: no kernel for this device"
    monkeypatch.setattr(doctor, "bitsandbytes_4bit_error", lambda: error)
    assert doctor.run(doctor_args(str(recipe))) == 1
    assert f"bitsandbytes cannot quantize on this machine ({error})" in " ".join(capsys.readouterr().out.split())


def test_a_plan_for_another_machines_tier_is_not_judged_by_this_one(tmp_path, capsys):
    recipe = tmp_path / "qlora.yaml"
    recipe.write_text(QLORA_RECIPE)
    laptop = fake_cpu_hardware()  # no bitsandbytes 4-bit here, planning for a 16 GB GPU
    assert doctor.run(doctor_args(str(recipe), preset="16gb"), hardware=laptop) == 0
    assert "does not run here" not in capsys.readouterr().out


# --- trl-smol render ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--start", "-n"])
def test_render_rejects_negative_positions(capsys, flag):
    last_line = exits_with_argparse_error(capsys, ["render", "--config", "recipe.yaml", flag, "-1"])
    assert last_line.endswith("expected a whole number, 0 or more, got -1")


def render_recipe(tmp_path, model_dir, rows, extra=""):
    data = tmp_path / "data"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {model_dir}\ndataset_name: {data}\noutput_dir: {tmp_path / 'out'}\nbf16: false\n{extra}"
    )
    return str(recipe)


def test_render_validates_every_row_it_would_train_on_not_only_those_shown(tmp_path, tiny_model_dir, capsys):
    recipe = render_recipe(tmp_path, tiny_model_dir, [CHAT] * 4 + [BAD_ROLE])
    assert main(["render", "--config", recipe, "-n", "1"]) == 2  # row 5 (line 5) is not shown, and would stop training
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("trl-smol render: Dataset 'train', row 5, field `messages[0].role`")


def test_render_says_how_many_rows_it_checked(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")
    recipe = render_recipe(tmp_path, tiny_model_dir, [CHAT] * 4 + [BAD_ROLE], extra="invalid_rows: drop\n")
    assert main(["render", "--config", recipe, "-n", "0"]) == 0
    captured = capsys.readouterr()
    assert "Checked all 5 rows of the train split: 1 invalid, dropped (invalid_rows: drop)." in captured.out
    assert "dropped 1 of 5 rows of dataset 'train'" in " ".join(captured.err.split())  # the table's title

    valid = render_recipe(tmp_path / "valid", tiny_model_dir, [CHAT] * 3)
    assert main(["render", "--config", valid, "-n", "1"]) == 0
    assert "Checked all 3 rows of the train split: every row is valid." in capsys.readouterr().out
