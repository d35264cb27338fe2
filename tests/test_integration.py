"""How the plugin enters the stock `trl sft` flow, and how it stays out of everything else."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from datasets import Dataset

from trl_smol.launch import detect_role
from trl_smol.parser import SmolTrlParser, UnknownRecipeKeyError

TRL = os.path.join(os.path.dirname(sys.executable), "trl")


def run(command, env=None, timeout=300, **kwargs):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=timeout, **kwargs)


# --- which processes the plugin touches --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["/venv/bin/trl", "sft", "--config", "r.yaml"], "cli"),
        (["/venv/bin/trl", "sft", "--help"], "cli"),
        (["/venv/bin/trl", "dpo", "--config", "r.yaml"], None),
        (["/venv/bin/trl", "env"], None),
        (["/venv/lib/python3.11/site-packages/trl/scripts/sft.py", "--config", "r.yaml"], "script"),
        (["/venv/lib/python3.11/site-packages/trl/scripts/dpo.py"], None),
        (["train.py", "sft"], None),
        (["-c"], None),
        ([], None),
    ],
)
def test_detect_role_recognises_only_the_two_trl_sft_processes(argv, expected):
    assert detect_role(argv) == expected


def test_python_dash_m_sft_script_is_recognised_from_orig_argv():
    assert detect_role(["-m"], ["python", "-m", "trl.scripts.sft", "--config", "r.yaml"]) == "script"
    assert detect_role(["-m"], ["python", "-m", "trl.scripts.dpo"]) is None


def test_a_users_own_program_still_gets_trls_classes():
    code = "import trl; from trl import SFTTrainer, SFTConfig; print(SFTTrainer.__module__, SFTConfig.__module__)"
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["trl.trainer.sft_trainer", "trl.trainer.sft_config"]


# --- the CLI process ---------------------------------------------------------------------------------------------


def test_trl_sft_help_lists_the_plugin_options():
    result = run([TRL, "sft", "--help"])
    assert result.returncode == 0, result.stderr
    for option in ("--memory_preset", "--sample_prompts", "--smol_chat_template", "--chat_template_kwargs"):
        assert option in result.stdout


def test_disable_switch_turns_the_plugin_off_completely():
    result = run([TRL, "sft", "--help"], env={"TRL_SMOL_DISABLE": "1"})
    assert result.returncode == 0, result.stderr
    assert "--memory_preset" not in result.stdout
    assert "--learning_rate" in result.stdout


def test_other_trl_commands_are_unchanged():
    result = run([TRL, "dpo", "--help"])
    assert result.returncode == 0, result.stderr
    assert "--memory_preset" not in result.stdout


def test_unknown_recipe_key_fails_before_any_model_is_loaded(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: does/not-matter\nlerning_rate: 1.0e-4\noutput_dir: out\n")
    result = run([TRL, "sft", "--config", str(recipe)], timeout=120)
    assert result.returncode != 0
    message = result.stderr
    assert "Unknown key `lerning_rate`" in message
    assert str(recipe) in message
    assert "Did you mean `learning_rate`?" in message
    assert "Loading" not in message  # no model, no dataset


# --- the parser ---------------------------------------------------------------------------------------------------


def _sft_parser():
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments
    from trl.trainer.sft_config import SFTConfig

    # TRL's own SFTConfig in: the parser reads SmolSFTConfig instead.
    return SmolTrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig))


def test_parser_reads_plugin_keys_and_accelerate_keys_from_a_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(
            """\
            model_name_or_path: m
            output_dir: out
            bf16: false
            memory_preset: cpu
            sample_prompts: ["Hi"]
            num_processes: 2
            env:
              SOME_FLAG: "1"
            """
        )
    )
    _, training_args, model_args, _, remaining = _sft_parser().parse_args_and_config(
        ["--config", str(recipe), "--learning_rate", "3e-4"], return_remaining_strings=True
    )
    assert type(training_args).__name__ == "SmolSFTConfig"
    assert training_args.memory_preset == "cpu"
    assert training_args.sample_prompts == ["Hi"]
    assert training_args.learning_rate == 3e-4
    assert remaining == ["--num_processes", "2"]  # left for `accelerate launch`, as in stock TRL
    # What the recipe and command line set is recorded once, for presets and the run plan (not on private attributes).
    settings = training_args.user_settings
    assert {"memory_preset", "sample_prompts", "learning_rate", "bf16"} <= settings.explicit
    assert "gradient_checkpointing" not in settings.explicit
    assert settings.recipe_path == str(recipe) and settings.recipe["memory_preset"] == "cpu"
    assert "user_settings" not in training_args.to_dict()  # a record, never serialised


def test_the_recorded_recipe_keeps_its_values_as_written():
    """The dataclasses turn `datasets:` entries into DatasetConfig objects; the record keeps the YAML values (the
    model card prints them)."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "smollm3_demo.yaml"
    _, training_args, _, dataset_args = _sft_parser().parse_args_and_config(["--config", str(recipe)])
    (entry,) = training_args.user_settings.recipe["datasets"]
    assert entry["data_files"] == "recipes/data/smollm3_demo.jsonl" and isinstance(entry, dict)
    assert dataset_args.datasets[0].data_files == "recipes/data/smollm3_demo.jsonl"


def test_parser_suggests_the_closest_key(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("memory_presets: auto\n")
    with pytest.raises(UnknownRecipeKeyError, match="Did you mean `memory_preset`"):
        _sft_parser().parse_args_and_config(["--config", str(recipe)], return_remaining_strings=True)


# --- the script process (end to end) -----------------------------------------------------------------------------


@pytest.mark.slow
def test_trl_sft_trains_with_smol_sft_trainer_and_prints_the_banner(shared_trl_sft_run):
    result, out = shared_trl_sft_run.result, shared_trl_sft_run.output_dir  # the tiny SmolLM3 (tests/conftest.py)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    banner = [line for line in result.stdout.splitlines() if line.startswith("trl-smol ") and " active " in line]
    assert len(banner) == 1, result.stdout  # once (the preset adds other `trl-smol memory: ...` lines)
    assert "active (trl sft, run " in banner[0]
    assert "chat_template=smollm3" in banner[0]  # the tiny tokenizer has no template, like SmolLM3-3B-Base
    saved = json.loads((out / "tokenizer_config.json").read_text())
    assert saved["eos_token"] == "<|im_end|>"
    assert not list(out.glob("checkpoint-*"))
    card = (out / "README.md").read_text()  # written by the final save even without checkpoints
    assert "trl-smol" in card and "- smollm3" in card


# --- the Python API: drop-in -------------------------------------------------------------------------------------


def test_plugin_defaults_train_exactly_like_stock_trl(tiny_model_dir, tmp_path):
    """Same model, data and seed: SmolSFTTrainer with default SmolSFTConfig logs the same losses as SFTTrainer."""
    from trl import SFTConfig, SFTTrainer

    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    dataset = Dataset.from_list([{"text": f"The number {i} comes after {i - 1}."} for i in range(16)])
    common = dict(max_steps=3, per_device_train_batch_size=4, bf16=False, report_to="none", logging_steps=1, seed=7)
    losses = []
    for trainer_cls, config_cls in ((SFTTrainer, SFTConfig), (SmolSFTTrainer, SmolSFTConfig)):
        args = config_cls(output_dir=str(tmp_path / trainer_cls.__name__), **common)
        trainer = trainer_cls(model=tiny_model_dir, args=args, train_dataset=dataset)
        trainer.train()
        losses.append([log["loss"] for log in trainer.state.log_history if "loss" in log])
    assert len(losses[0]) == 3
    assert losses[0] == losses[1]


def test_smol_trainer_accepts_trl_config_and_tokenizer_alias(tiny_model, tiny_tokenizer, chat_rows, tmp_path):
    from trl import SFTConfig

    from trl_smol import SFTTrainer  # the course's import, from trl_smol

    args = SFTConfig(output_dir=str(tmp_path), max_steps=1, bf16=False, report_to="none")
    with pytest.warns(FutureWarning, match="processing_class"):
        trainer = SFTTrainer(
            model=tiny_model, tokenizer=tiny_tokenizer, args=args, train_dataset=Dataset.from_list(chat_rows)
        )
    assert type(trainer.args).__name__ == "SmolSFTConfig"
    assert trainer.processing_class is tiny_tokenizer


def test_dataset_dict_as_train_dataset_lists_its_splits(tiny_model, chat_rows, tmp_path):
    from datasets import DatasetDict

    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    splits = DatasetDict(
        {"smoltalk_think": Dataset.from_list(chat_rows), "smoltalk_no_think": Dataset.from_list(chat_rows)}
    )
    with pytest.raises(TypeError, match=r"splits \[smoltalk_think, smoltalk_no_think\].*smoltalk2_train\(dataset\)"):
        SmolSFTTrainer(
            model=tiny_model, args=SmolSFTConfig(output_dir=str(tmp_path), bf16=False), train_dataset=splits
        )


def test_banner_names_version_and_features(tiny_model, tiny_tokenizer, chat_rows, tmp_path, capsys):
    from trl_smol import SmolSFTConfig, SmolSFTTrainer, __version__

    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none")
    SmolSFTTrainer(
        model=tiny_model, processing_class=tiny_tokenizer, args=args, train_dataset=Dataset.from_list(chat_rows)
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trl-smol")]
    reason = "SmolLM3 model whose tokenizer has no chat template"
    assert len(lines) == 1
    assert re.fullmatch(
        rf"trl-smol {re.escape(__version__)} active \(python, run \d{{8}}-\d{{6}}-[0-9a-f]{{4}}\): "
        rf"chat_template=smollm3 \({reason}\)",
        lines[0],
    ), lines[0]


def test_patch_swaps_names_only_for_the_role(monkeypatch):
    import signal
    from types import SimpleNamespace

    from trl_smol.hook import patch_trl
    from trl_smol.launch import ACTIVE_ENV, FAILURE_FILE_ENV

    # Patching a process sets its environment, excepthook and signal handlers: restored afterwards, so that later
    # tests do not run as if inside `trl sft`.
    for name in (ACTIVE_ENV, FAILURE_FILE_ENV):
        monkeypatch.setenv(name, "")  # records the variable's state (absent, usually) for the undo
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    cli, script = SimpleNamespace(), SimpleNamespace()
    try:
        patch_trl(cli, "cli")
        patch_trl(script, "script")
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert {name for name in vars(cli)} == {"SFTConfig", "TrlParser"}
    assert {name for name in vars(script)} == {"SFTConfig", "TrlParser", "SFTTrainer", "get_dataset"}
    assert script.SFTTrainer.__name__ == "SmolSFTTrainer" and script.get_dataset.__module__ == "trl_smol.data.mixtures"


@pytest.mark.parametrize(
    ("native", "preset", "warned"), [(False, "none", True), (True, "none", False), (False, "cpu", False)]
)
def test_bf16_autocast_on_a_cpu_without_native_bf16_is_announced(monkeypatch, tmp_path, native, preset, warned):
    """TRL's default bf16 with `use_cpu` trains on any CPU; where the CPU emulates bf16 (15.6x slower per step than
    float32 for a small SmolLM3 on this project's 2-core AVX2 machine) the run says so, with the fix."""
    from hardware_fakes import fake_cpu_hardware

    from trl_smol import SmolSFTConfig
    from trl_smol.plan import plan_run

    monkeypatch.setattr("trl_smol.memory.hardware.cpu_has_native_bf16", lambda: native)
    args = SmolSFTConfig(output_dir=str(tmp_path), use_cpu=True, memory_preset=preset)  # bf16: TRL's default
    plan = plan_run(args, model_name="trl-smol/SmolLM3-demo-135M", hardware=fake_cpu_hardware())
    warning = plan["precision"].warning
    assert bool(warning) is warned and plan.warnings == ([warning] if warned else [])
    if warned:
        assert "`bf16: false`" in warning and "`memory_preset: auto`" in warning
        assert "precision=bf16 (on a CPU without native bf16" in plan.banner()
