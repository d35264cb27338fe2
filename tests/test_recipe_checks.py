"""One validation for every entry point, and the hardware a recipe needs, checked before anything loads.

`trl sft` (its recipe parser), `trl-smol doctor`, `trl-smol render`, `trl-smol estimate` and `SmolSFTConfig` reject a
recipe value with the same one line naming the key, the value and what is accepted (trl_smol/features/values.py). A
GPU recipe on a machine without one stops in `trl sft` with one line naming the demo recipe and `trl-smol doctor
--hardware`, and doctor's verdict is that same line (trl_smol/memory/requirements.py).
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware

from trl_smol import SmolSFTConfig
from trl_smol.commands import doctor, main
from trl_smol.commands.arguments import recipe_parser
from trl_smol.features.values import RecipeValueError
from trl_smol.memory.requirements import hardware_problem

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
TRL = os.path.join(os.path.dirname(sys.executable), "trl")
DEMO = "model_name_or_path: trl-smol/SmolLM3-demo-135M\nbf16: false\n"

# (recipe line, the start of the one-line error every entry point gives)
BAD_VALUES = [
    ("max_length: -1", "max_length=-1 is not valid; use a whole number >= 1, or null (no truncation)."),
    ("max_length: 0", "max_length=0 is not valid; use a whole number >= 1"),
    ("per_device_train_batch_size: 0", "per_device_train_batch_size=0 is not valid; use a whole number >= 1."),
    ("optim: adamw_nonsense", "optim='adamw_nonsense' is not valid; use one of transformers' optimizers"),
    ("sample_max_new_tokens: -5", "sample_max_new_tokens=-5 is not valid; use a whole number >= 1."),
    ("sample_every_n_steps: often", "sample_every_n_steps='often' is not valid; use a whole number >= 0 (0: only"),
    ("sample_every_n_steps: -1", "sample_every_n_steps=-1 is not valid; use a whole number >= 0 (0: only"),
    ("sample_top_p: 1.5", "sample_top_p=1.5 is not valid; use a number > 0 and <= 1."),
    ("sample_at_start: maybe", "sample_at_start='maybe' is not valid; use true or false."),
    ("smol_cpu_threads: 0", "smol_cpu_threads=0 is not valid; use a whole number >= 1, or null (as launched)."),
    ("invalid_rows: skip", "invalid_rows='skip' is not valid; use one of error, drop."),
    ("lr_scheduler_type: sometimes", "lr_scheduler_type='sometimes' is not valid; use one of linear, cosine,"),
]


def write(tmp_path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def trl_sft_error(recipe: str) -> str:
    """What `trl sft --config recipe` stops with: its recipe parser reads the recipe in the CLI process."""
    with pytest.raises(RecipeValueError) as error:
        recipe_parser().parse_args_and_config(["--config", recipe])
    return str(error.value)


def doctor_error(recipe: str, capsys) -> str:
    args = argparse.Namespace(config=recipe, preset=None, model=None)
    assert doctor.run(args, hardware=fake_cuda_hardware(24)) == 2
    (line,) = capsys.readouterr().out.strip().splitlines()
    return line.removeprefix("trl-smol doctor: ")


def render_error(recipe: str, capsys) -> str:
    assert main(["render", "--config", recipe]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert "Traceback" not in captured.out + captured.err
    return line.removeprefix("trl-smol render: ")


@pytest.mark.parametrize(("line", "message"), BAD_VALUES, ids=[line for line, _ in BAD_VALUES])
@pytest.mark.parametrize("entry", ["trl sft", "doctor", "render"])
def test_a_bad_recipe_value_is_the_same_one_line_at_every_entry_point(tmp_path, capsys, entry, line, message):
    recipe = write(tmp_path, f"{DEMO}{line}\n")
    expected = trl_sft_error(recipe)
    assert expected.startswith(message) and "\n" not in expected
    if entry == "doctor":
        assert doctor_error(recipe, capsys) == expected
    elif entry == "render":
        assert render_error(recipe, capsys) == expected


@pytest.mark.parametrize(
    ("key", "value"), [("sample_max_new_tokens", -5), ("sample_every_n_steps", -1), ("smol_cpu_threads", 0)]
)
def test_a_python_config_checks_the_plugin_settings_by_the_same_rules(tmp_path, key, value):
    with pytest.raises(RecipeValueError, match=rf"^{key}={value} is not valid; use a whole number >= "):
        SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", **{key: value})


@pytest.mark.parametrize(
    ("flags", "line"),
    [(["--max-length", "-1"], "max_length: -1"), (["--optim", "adamw_nonsense"], "optim: adamw_nonsense")],
)
def test_estimate_rejects_its_flags_as_trl_sft_rejects_the_recipe_keys(tmp_path, capsys, flags, line):
    expected = trl_sft_error(write(tmp_path, f"{DEMO}{line}\n"))
    assert main(["estimate", *flags, "--json"]) == 2
    assert capsys.readouterr().out.strip().splitlines() == [f"trl-smol estimate: {expected}"]


def test_the_command_line_is_checked_like_the_recipe(tmp_path):
    recipe = write(tmp_path, DEMO)
    with pytest.raises(RecipeValueError, match=r"^max_length=-1 is not valid"):
        recipe_parser().parse_args_and_config(["--config", recipe, "--max_length", "-1"])
    with pytest.raises(RecipeValueError, match=r"^optim='x' is not valid"):
        recipe_parser().parse_args_and_config(["--config", recipe, "--optim", "x"])


def test_python_configs_are_checked_like_the_recipe(tmp_path):
    from trl_smol import SmolSFTConfig

    with pytest.raises(RecipeValueError, match=r"^max_length=-1 is not valid; use a whole number >= 1, or null"):
        SmolSFTConfig(output_dir=str(tmp_path), max_length=-1)
    with pytest.raises(RecipeValueError, match=r"^optim='adamw_nonsense' is not valid"):
        SmolSFTConfig(output_dir=str(tmp_path), optim="adamw_nonsense")
    assert SmolSFTConfig(output_dir=str(tmp_path), max_length=None, optim="adamw_torch").max_length is None


def test_valid_values_and_null_pass(tmp_path):
    recipe = write(
        tmp_path, f"{DEMO}max_length: null\nsample_every_n_steps: 0\nsmol_cpu_threads: 2\noptim: adamw_8bit\n"
    )
    _, training_args, *_ = recipe_parser().parse_args_and_config(["--config", recipe])
    assert training_args.max_length is None and training_args.sample_every_n_steps == 0


def test_render_errors_are_one_line_and_the_traceback_is_behind_a_flag(tmp_path, capsys, monkeypatch):
    recipe = write(tmp_path, f"{DEMO}dataset_name: {tmp_path / 'missing'}\n")
    assert main(["render", "--config", recipe]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("trl-smol render: ") and "missing" in line
    monkeypatch.setenv("TRL_SMOL_TRACEBACK", "1")
    with pytest.raises(Exception, match="missing"):
        main(["render", "--config", recipe])


# --- the hardware a recipe needs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("recipe", "needs"),
    [
        ("smollm3_lora.yaml", "(bf16 mixed precision, `bf16: true`)"),
        ("smollm3_full.yaml", "(bf16 mixed precision, `bf16: true`)"),
        ("smollm3_qlora.yaml", "(4-bit weights, `load_in_4bit: true`)"),
        ("smollm3_course.yaml", "(`HuggingFaceTB/SmolLM3-3B-Base` trained as written: about"),
    ],
)
def test_doctor_says_a_gpu_recipe_does_not_run_on_a_cpu_with_the_line_trl_sft_stops_with(
    recipe, needs, capsys, monkeypatch
):
    monkeypatch.chdir(REPO)  # the recipe named as the user types it
    config = f"recipes/{recipe}"
    laptop = fake_cpu_hardware(16)
    assert doctor.run(argparse.Namespace(config=config, preset=None, model=None), hardware=laptop) == 1
    values = recipe_parser().recipe_values(yaml.safe_load(Path(config).read_text()), config)
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    line = hardware_problem(values, laptop, recipe=config)  # what `trl sft` raises here
    assert verdict == f"Verdict: does not run here: {line}"
    assert f"recipe {config} needs a CUDA GPU {needs}" in line
    assert "`trl sft --config recipes/smollm3_demo.yaml`" in line
    assert f"`trl-smol doctor --config {config} --hardware h100-80gb`" in line
    assert "Estimated time" not in verdict


def test_the_demo_recipe_runs_on_a_cpu_and_doctor_shows_only_what_the_run_applies(capsys):
    args = argparse.Namespace(config=str(RECIPES / "smollm3_demo.yaml"), preset=None, model=None)
    assert doctor.run(args, hardware=fake_cpu_hardware(16)) == 0
    out = capsys.readouterr().out
    # no memory_preset: no preset table with changes `trl sft` would not make, the settings as written instead
    assert "Preset `" not in out and "changed" not in out and "No memory preset" in out
    assert "Estimated time:" in out and "for 30 steps" in out
    assert out.strip().splitlines()[-1].startswith("Verdict: fits with")


def test_doctor_sizes_a_gpu_recipe_for_a_described_gpu_with_its_time(capsys):
    assert main(["doctor", "--config", str(RECIPES / "smollm3_qlora.yaml"), "--hardware", "h100-80gb"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Preset `80gb`" in out and "Estimated time:" in out and "for 1000 steps" in out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"bf16": True}, "needs a CUDA GPU (bf16 mixed precision"),
        ({"fp16": True}, "needs a CUDA GPU (fp16 mixed precision"),
        ({"load_in_8bit": True}, "needs a CUDA GPU (8-bit weights"),
        ({"bf16": True, "use_cpu": True}, None),  # the CPU is meant: transformers trains bf16 there
        ({"model_name_or_path": "trl-smol/SmolLM3-demo-135M", "use_peft": True, "max_length": 512}, None),
    ],
)
def test_what_a_recipe_needs_on_a_machine_without_a_gpu(values, expected):
    recipe = argparse.Namespace(**{"memory_preset": "none", "model_name_or_path": None, **values})
    problem = hardware_problem(recipe, fake_cpu_hardware(16), recipe="r.yaml", four_bit_error=lambda: None)
    assert problem is None if expected is None else expected in problem


def test_4bit_weights_need_a_working_bitsandbytes_on_a_gpu_too():
    recipe = argparse.Namespace(load_in_4bit=True, bf16=True, memory_preset="none", model_name_or_path=None)
    gpu = fake_cuda_hardware(16)
    assert hardware_problem(recipe, gpu, four_bit_error=lambda: None) is None
    problem = hardware_problem(recipe, gpu, recipe="q.yaml", four_bit_error=lambda: "RuntimeError: no backend")
    assert problem.startswith("recipe q.yaml loads 4-bit weights (`load_in_4bit: true`), but bitsandbytes cannot")
    assert "(RuntimeError: no backend)" in problem


@pytest.mark.slow
def test_trl_sft_stops_a_gpu_recipe_on_this_cpu_with_one_line_before_loading_anything(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "TRL_SMOL_TRACEBACK": ""}
    done = subprocess.run(
        [TRL, "sft", "--config", "recipes/smollm3_lora.yaml", "--output_dir", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "recipe recipes/smollm3_lora.yaml needs a CUDA GPU (bf16 mixed precision, `bf16: true`)" in last
    assert "`trl sft --config recipes/smollm3_demo.yaml`" in last and "--hardware h100-80gb" in last
    assert "doesn't support bf16/gpu" not in done.stderr and "Loading" not in done.stdout
    assert not (tmp_path / "out").exists()
