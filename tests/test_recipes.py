"""The SmolLM3 recipes: valid for the stock `trl sft` with the plugin, consistent, and runnable on local stand-ins."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from smoltalk2_fixture import *  # noqa: F403  (pytest fixtures: offline_hf_home)
from smoltalk2_fixture import offline_env
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig

from trl_smol.data.mixtures import SmolDatasetMixtureConfig, smoltalk2_mixture
from trl_smol.parser import SmolTrlParser

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SMOLLM3_RECIPES = ["smollm3_qlora.yaml", "smollm3_lora.yaml", "smollm3_full.yaml"]
ACCELERATE_CONFIGS = {"fsdp2.yaml": "FSDP", "zero3.yaml": "DEEPSPEED"}
# This machine has no bf16 GPU: the only override the parse tests add.
CPU = ["--bf16", "False"]


@pytest.fixture(autouse=True)
def cached_smoltalk2(smoltalk2_cache):
    """The parser checks that a Hub dataset can be read before anything loads (trl_smol/hub.py): offline, SmolTalk2
    must be in the cache, here a local stand-in."""
    return smoltalk2_cache


def sft_parser() -> SmolTrlParser:
    """What `trl sft` builds (trl/scripts/sft.py `make_parser`) once the plugin has swapped in its parser."""
    return SmolTrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig))


def parse(recipe: str, *extra: str):
    return sft_parser().parse_args_and_config(["--config", str(RECIPES / recipe), *CPU, *extra])


@pytest.mark.parametrize("recipe", SMOLLM3_RECIPES)
def test_every_key_is_a_trl_or_plugin_argument(recipe):
    keys = set(yaml.safe_load((RECIPES / recipe).read_text()))
    dataclass_keys = {action.dest for action in sft_parser()._actions}
    assert keys <= dataclass_keys, f"keys no dataclass knows: {sorted(keys - dataclass_keys)}"
    parse(recipe)  # and the parser (which rejects unknown keys) accepts the file


@pytest.mark.parametrize("recipe", SMOLLM3_RECIPES)
def test_recipe_trains_smollm3_base_on_the_published_smoltalk2_mixture(recipe):
    script_args, training_args, model_args, dataset_args = parse(recipe)
    assert model_args.model_name_or_path == "HuggingFaceTB/SmolLM3-3B-Base"
    assert isinstance(dataset_args, SmolDatasetMixtureConfig) and dataset_args.think_share is None
    assert [vars(d) for d in dataset_args.datasets] == [vars(d) for d in smoltalk2_mixture()]
    assert script_args.dataset_name is None  # the mixture is the only data source
    # A Base model has no habit of the open system turn: train regular ChatML.
    assert training_args.chat_template_kwargs == {"close_system_turn": True}


# The course's guidance (recipes/smollm3_course.yaml explains it): 5e-5 for full fine-tuning, 2e-4 for LoRA/QLoRA.
COURSE_LEARNING_RATES = {"full": 5e-5, "lora": 2e-4, "qlora": 2e-4}


def training_method(model_args) -> str:
    return "qlora" if model_args.load_in_4bit else "lora" if model_args.use_peft else "full"


@pytest.mark.parametrize("recipe", [*SMOLLM3_RECIPES, "smollm3_course.yaml"])
def test_recipe_follows_the_course_guidance(recipe):
    _, training_args, model_args, dataset_args = parse(recipe)
    method = training_method(model_args)
    if recipe != "smollm3_course.yaml":
        assert method == recipe.removeprefix("smollm3_").removesuffix(".yaml")
        assert method in training_args.output_dir and method in training_args.run_name
    assert training_args.learning_rate == COURSE_LEARNING_RATES[method]
    assert training_args.warmup_steps == 0.1  # 10% of the steps
    assert training_args.eval_strategy == "steps" and dataset_args.test_split_size > 0  # validation loss
    assert training_args.sample_prompts and training_args.report_to == ["trackio"]


def test_qlora_recipe_is_4bit_with_a_memory_preset():
    _, training_args, model_args, _ = parse("smollm3_qlora.yaml")
    assert model_args.load_in_4bit and model_args.use_peft and model_args.bnb_4bit_quant_type == "nf4"
    assert training_args.memory_preset == "auto"


def test_think_share_is_one_setting_on_the_command_line():
    _, _, _, dataset_args = parse("smollm3_lora.yaml", "--think_share", "0.5")
    think = sum(d.fraction for d in dataset_args.datasets if not d.split.endswith("_no_think"))
    assert think / sum(d.fraction for d in dataset_args.datasets) == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_configs_pass_accelerates_own_parsing(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(RECIPES / "accelerate" / name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type.value == ACCELERATE_CONFIGS[name] and config.mixed_precision == "bf16"
    if name == "fsdp2.yaml":
        import transformers

        assert config.fsdp_config["fsdp_version"] == 2
        assert hasattr(
            transformers.models.smollm3.modeling_smollm3, config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        )
    else:
        assert config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_save_16bit_model"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", SMOLLM3_RECIPES)
def test_recipe_runs_two_steps_on_local_stand_ins(recipe, offline_hf_home, tiny_model_dir, tmp_path):
    """`trl sft --config <recipe>`, the model overridden on the command line, SmolTalk2 read from a local copy."""
    out = tmp_path / "out"
    command = [
        *(str(Path(sys.executable).parent / "trl"), "sft", "--config", str(RECIPES / recipe)),
        *("--model_name_or_path", tiny_model_dir, "--output_dir", str(out), "--bf16", "False", "--dtype", "float32"),
        # keep it short: 2 steps of short sequences, evaluate, sample and save once
        *("--max_steps", "2", "--max_length", "128", "--per_device_train_batch_size", "2"),
        *("--gradient_accumulation_steps", "1", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1"),
        *("--sample_every_n_steps", "2", "--sample_max_new_tokens", "4", "--report_to", "none"),
        # 4-bit weights are a GPU recipe's: on this CPU machine `use_cpu` says the CPU is meant (else `trl sft` stops)
        *(("--use_cpu", "True") if "qlora" in recipe else ()),
    ]
    result = subprocess.run(command, env=offline_env(offline_hf_home), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert any("eval_loss" in entry for entry in state["log_history"])
    assert (out / "samples.jsonl").read_text().strip()
