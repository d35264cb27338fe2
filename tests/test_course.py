"""The SmolLM3 SFT course's examples with trl-smol: the CLI command as written, the Python example with two lines
changed (the import and `smoltalk2_train`), trackio used as the course uses it, and defaults that stay TRL's.

Offline stand-ins: `HF_HOME` points at a local Hugging Face home where `HuggingFaceTB/smoltalk2` (config `SFT`, a few
rows per split) and `HuggingFaceTB/SmolLM3-3B-Base` (a tiny random SmolLM3) sit as if downloaded, with
`HF_HUB_OFFLINE=1` and `HF_DATASETS_OFFLINE=1`: the way a user points the libraries at local copies.
"""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from smoltalk2_fixture import *  # noqa: F403  (pytest fixtures: offline_hf_home, smoltalk2_cache)
from smoltalk2_fixture import offline_env
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig

from trl_smol.data.mixtures import smoltalk2_mixture
from trl_smol.data.smoltalk2 import MissingSplitError
from trl_smol.parser import SmolTrlParser

# The course's CLI example, verbatim.
COURSE_CLI = (
    "--model_name_or_path HuggingFaceTB/SmolLM3-3B-Base --dataset_name HuggingFaceTB/smoltalk2 --dataset_config SFT "
    "--output_dir ./smollm3-sft-model --per_device_train_batch_size 4 --learning_rate 5e-5 --max_steps 1000 "
    "--logging_steps 50 --save_steps 200 --report_to trackio"
).split()
CPU = ["--bf16", "False"]  # this machine has no bf16 GPU


def parse(argv):
    return SmolTrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)).parse_args_and_config(argv)


def test_missing_train_split_of_smoltalk2_becomes_the_smollm3_mixture_in_one_line(smoltalk2_cache, capsys):
    script_args, training_args, _, dataset_args = parse(COURSE_CLI + CPU)
    assert [vars(d) for d in dataset_args.datasets] == [vars(d) for d in smoltalk2_mixture()]
    assert script_args.dataset_train_split == "train"  # what get_dataset() returns the mixture under
    mixture_lines = [line for line in capsys.readouterr().out.splitlines() if "has no `train` split" in line]
    assert len(mixture_lines) == 1
    line = mixture_lines[0]
    assert "25 splits" in line and "s1k_1.1_think=" in line and "13.8% reasoning rows" in line
    assert "--dataset_train_split" in line and "think_share" in line  # how to choose others
    assert "Hyperparameters stay as you set them" in line and "recipes/smollm3_course.yaml" in line


def test_the_parser_changes_no_hyperparameter(smoltalk2_cache):
    """Only the data source changes (the mixture in place of the missing split): every training argument is what
    TRL's own parser gives for the same command line, with the plugin's fields at their defaults."""
    from trl import TrlParser

    argv = [a for a in COURSE_CLI if a not in ("--learning_rate", "5e-5")] + CPU
    _, ours, _, dataset_args = parse(argv)
    _, stock, _, _ = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)).parse_args_and_config(
        argv
    )
    stock_values = stock.to_dict()
    assert {key: value for key, value in ours.to_dict().items() if key in stock_values} == stock_values
    assert ours.learning_rate == SFTConfig.learning_rate and ours.warmup_steps == 0 and ours.eval_strategy == "no"
    assert ours.sample_prompts is None and dataset_args.test_split_size is None


def test_the_course_recipe_holds_the_course_guidance(smoltalk2_cache, capsys):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "smollm3_course.yaml"
    script_args, training_args, _, dataset_args = parse(["--config", str(recipe), *CPU])
    assert (script_args.dataset_name, script_args.dataset_config) == ("HuggingFaceTB/smoltalk2", "SFT")
    assert training_args.learning_rate == 5e-5 and training_args.warmup_steps == 0.1
    assert training_args.eval_strategy == "steps" and dataset_args.test_split_size == 0.001
    assert len(training_args.sample_prompts) == 3 and training_args.assistant_only_loss
    assert [vars(d) for d in dataset_args.datasets] == [vars(d) for d in smoltalk2_mixture()]


def test_a_mistyped_smoltalk2_split_lists_the_real_ones(smoltalk2_cache):
    with pytest.raises(MissingSplitError, match=r"Split `s1k` not found .* Available splits: .*s1k_1\.1_think"):
        parse(COURSE_CLI + CPU + ["--dataset_train_split", "s1k"])


def test_any_other_dataset_with_a_missing_split_fails_with_its_splits(tmp_path):
    for split in ("validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    argv = ["--model_name_or_path", "m", "--dataset_name", str(tmp_path), "--output_dir", str(tmp_path), *CPU]
    with pytest.raises(MissingSplitError, match=r"Split `train` not found .* Available splits: validation, test"):
        parse(argv)


def test_tokenizer_is_accepted_as_processing_class_with_one_notice(tiny_model, tiny_tokenizer, chat_rows, tmp_path):
    from datasets import Dataset

    from trl_smol import SFTConfig as SmolConfig
    from trl_smol import SFTTrainer

    args = SmolConfig(output_dir=str(tmp_path), bf16=False, report_to="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = SFTTrainer(
            model=tiny_model, tokenizer=tiny_tokenizer, train_dataset=Dataset.from_list(chat_rows), args=args
        )
    notices = [w for w in caught if "tokenizer=" in str(w.message)]
    assert len(notices) == 1 and issubclass(notices[0].category, FutureWarning)
    assert trainer.processing_class is tiny_tokenizer


def test_a_dataset_dict_as_train_dataset_lists_its_splits_and_points_to_the_mixture(tiny_model, chat_rows, tmp_path):
    from datasets import Dataset, DatasetDict

    from trl_smol import SFTConfig as SmolConfig
    from trl_smol import SFTTrainer

    splits = DatasetDict(
        {"s1k_1.1_think": Dataset.from_list(chat_rows), "table_gpt_no_think": Dataset.from_list(chat_rows)}
    )
    with pytest.raises(TypeError, match=r"splits \[s1k_1\.1_think, table_gpt_no_think\].*smoltalk2_train"):
        SFTTrainer(model=tiny_model, train_dataset=splits, args=SmolConfig(output_dir=str(tmp_path), bf16=False))


def test_smollm3_base_gets_the_smollm3_template_even_when_its_tokenizer_has_one(tiny_tokenizer):
    from trl_smol.templating import smollm3_template_reason

    tiny_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # not the instruct format
    assert (
        smollm3_template_reason(tiny_tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "auto", model_type="smollm3")
        == "SmolLM3 Base checkpoint"
    )
    assert smollm3_template_reason(tiny_tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "keep") is None


@pytest.mark.slow
def test_course_cli_example_runs_as_written(offline_hf_home, tmp_path):
    """The course command, unmodified, plus overrides appended for a short test (2 steps, short rows); on this
    machine without bf16 it trains in float32 because `bf16` is left unset, and the banner says so."""
    trl = str(Path(sys.executable).parent / "trl")
    overrides = ["--max_steps", "2", "--logging_steps", "1", "--save_steps", "2", "--max_length", "128"]
    env = offline_env(offline_hf_home, TRACKIO_DIR=str(tmp_path / "trackio"))
    result = subprocess.run(
        [trl, "sft", *COURSE_CLI, *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    out = tmp_path / "smollm3-sft-model"

    # The mixture line, once, and the banner: SmolLM3 template applied (a Base model), precision announced.
    assert output.count("has no `train` split; training on SmolLM3's SFT mixture of 25 splits") == 1
    banner = next(line for line in output.splitlines() if line.startswith("trl-smol ") and " active " in line)
    assert "chat_template=smollm3" in banner and "precision=float32 (bf16 left unset" in banner

    # Training ran with the command's own hyperparameters and TRL's defaults for the rest.
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and not any("eval_loss" in entry for entry in state["log_history"])
    assert state["train_batch_size"] == 4

    # The saved tokenizer and generation config carry SmolLM3's template and stop token.
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    template = tokenizer_config.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template and "Reasoning Mode" in template
    from transformers import AutoTokenizer

    stop_id = AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("<|im_end|>")
    generation = json.loads((out / "generation_config.json").read_text())
    assert stop_id in (
        generation["eos_token_id"] if isinstance(generation["eos_token_id"], list) else [generation["eos_token_id"]]
    )


@pytest.mark.slow
def test_course_recipe_trains_with_validation_loss_and_samples(offline_hf_home, tmp_path):
    """`recipes/smollm3_course.yaml`: the course's command with its guidance, shortened to 2 steps here."""
    trl = str(Path(sys.executable).parent / "trl")
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "smollm3_course.yaml"
    overrides = ["--max_steps", "2", "--logging_steps", "1", "--save_steps", "2", "--eval_steps", "2"]
    overrides += ["--sample_every_n_steps", "2", "--sample_max_new_tokens", "4", "--max_length", "128"]
    env = offline_env(offline_hf_home, TRACKIO_DIR=str(tmp_path / "trackio"))
    result = subprocess.run(
        [trl, "sft", "--config", str(recipe), *overrides], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    out = tmp_path / "smollm3-sft-model"
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "eval_loss" in entry] == [2]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {sample["step"] for sample in samples} == {0, 2} and len({s["prompt"] for s in samples}) == 3


# The course's Python example, with the two lines the plugin asks to change (the import, and `smoltalk2_train` for
# SmolTalk2's missing `train` split), and trackio used as the course uses it.
COURSE_PYTHON = """
import trackio as wandb
from transformers import AutoModelForCausalLM, AutoTokenizer
from datasets import load_dataset
from trl_smol import SFTConfig, SFTTrainer, smoltalk2_train

wandb.init(project="smollm3-sft", name="course-run")

model_name = "HuggingFaceTB/SmolLM3-3B-Base"
model = AutoModelForCausalLM.from_pretrained(model_name)
tokenizer = AutoTokenizer.from_pretrained(model_name)

dataset = load_dataset("HuggingFaceTB/smoltalk2", "SFT")

config = SFTConfig(
    output_dir="./smollm3-sft-model",
    per_device_train_batch_size=4,
    learning_rate=5e-5,
    max_steps=1000,
    logging_steps=50,
    save_steps=200,
    report_to="trackio",
)

trainer = SFTTrainer(
    model=model,
    tokenizer=tokenizer,
    train_dataset=smoltalk2_train(dataset),
    args=config,
)
trainer.train()
wandb.finish()
"""


# The example trains 1000 steps with 5 checkpoint saves; the test runs the same text with these counts (CI time).
TEST_STEPS = {"max_steps": 4, "logging_steps": 1, "save_steps": 2}


def with_step_counts(example: str, **counts: int) -> str:
    """`example` with each `name=value,` of `counts` given the new value; every other character is kept."""
    for name, value in counts.items():
        (line,) = [line for line in example.splitlines() if line.strip().startswith(f"{name}=")]
        example = example.replace(line, f"{line.split('=')[0]}={value},")
    return example


def test_the_course_example_keeps_its_text_and_the_test_changes_only_its_step_counts():
    assert (
        "max_steps=1000," in COURSE_PYTHON
        and "logging_steps=50," in COURSE_PYTHON
        and "save_steps=200," in COURSE_PYTHON
    )
    cut = with_step_counts(COURSE_PYTHON, **TEST_STEPS)
    changed = [(a, b) for a, b in zip(COURSE_PYTHON.splitlines(), cut.splitlines(), strict=True) if a != b]
    assert changed == [
        ("    max_steps=1000,", "    max_steps=4,"),
        ("    logging_steps=50,", "    logging_steps=1,"),
        ("    save_steps=200,", "    save_steps=2,"),
    ]


def test_load_dataset_is_untouched_and_smoltalk2_train_gives_the_rows_trl_sft_trains_on(smoltalk2_cache):
    from datasets import DatasetDict, load_dataset
    from datasets.builder import DatasetBuilder
    from trl import get_dataset

    import trl_smol.trainer  # noqa: F401  (what `from trl_smol import SFTTrainer` imports)
    from trl_smol import smoltalk2_train

    assert not hasattr(DatasetBuilder.as_dataset, "__wrapped__")  # `datasets` is not patched
    dataset = load_dataset("HuggingFaceTB/smoltalk2", "SFT")
    assert type(dataset) is DatasetDict and "train" not in dataset and len(dataset) == 25

    train = smoltalk2_train(dataset)
    expected = get_dataset(DatasetMixtureConfig(datasets=smoltalk2_mixture()))["train"]
    assert train.column_names == expected.column_names and train.to_list() == expected.to_list()

    half = smoltalk2_train(dataset, think_share=0.5)
    expected = get_dataset(DatasetMixtureConfig(datasets=smoltalk2_mixture(think_share=0.5)))["train"]
    assert half.to_list() == expected.to_list()

    seeded = smoltalk2_train(dataset, seed=3)
    assert len(seeded) == len(train) and seeded.to_list() == smoltalk2_train(dataset, seed=3).to_list()
    assert seeded.to_list() != train.to_list()  # a seeded random subset of each split, not the first rows


def test_smoltalk2_train_names_what_it_needs(smoltalk2_cache):
    from datasets import Dataset, DatasetDict

    from trl_smol import smoltalk2_train

    with pytest.raises(MissingSplitError, match=r"needs SmolTalk2's `SFT` splits .* has train, test"):
        smoltalk2_train(DatasetDict({"train": Dataset.from_list([{"a": 1}]), "test": Dataset.from_list([{"a": 1}])}))


def test_stock_and_plugin_train_identically_on_smoltalk2_data_with_default_settings(smoltalk2_cache, tiny_model_dir):
    """Defaults stay TRL's: the same SmolTalk2-shaped rows (`messages` + `chat_template_kwargs`), the same tokenizer
    (carrying the SmolLM3 template), model and seed give the same logged losses in `trl.SFTTrainer` and in
    `SmolSFTTrainer` with a default `SmolSFTConfig`."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer, smoltalk2_train

    train = smoltalk2_train(load_dataset("HuggingFaceTB/smoltalk2", "SFT"))
    common = dict(max_steps=3, per_device_train_batch_size=4, bf16=False, report_to="none", logging_steps=1, seed=7)
    losses = []
    for trainer_cls, config_cls in ((SFTTrainer, SFTConfig), (SmolSFTTrainer, SmolSFTConfig)):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        tokenizer.chat_template = SMOLLM3_CHAT_TEMPLATE
        args = config_cls(output_dir=str(smoltalk2_cache.parent / trainer_cls.__name__), **common)
        trainer = trainer_cls(model=tiny_model_dir, args=args, train_dataset=train, processing_class=tokenizer)
        trainer.train()
        losses.append([log["loss"] for log in trainer.state.log_history if "loss" in log])
    assert len(losses[0]) == 3
    assert losses[0] == losses[1]


@pytest.mark.parametrize(("machine_has_bf16", "expected"), [(False, False), (True, True)])
def test_bf16_left_unset_follows_the_machine(monkeypatch, tmp_path, machine_has_bf16, expected):
    """TRL's default (bf16) would stop the course example on a machine without bf16; unset, it follows the machine
    there, and the run plan announces it."""
    from trl_smol import SFTConfig as SmolConfig
    from trl_smol.features import Source
    from trl_smol.plan import plan_run

    monkeypatch.setattr("trl_smol.features.precision.bf16_trainable", lambda use_cpu: machine_has_bf16)
    args = SmolConfig(output_dir=str(tmp_path), use_cpu=True)  # use_cpu: transformers accepts bf16 either way
    assert args.bf16 is expected and "bf16" not in args.user_settings.explicit  # a preset may still choose
    precision = plan_run(args)["precision"]
    assert precision.source is Source.DEFAULT
    assert (precision.reason is None) if expected else precision.reason.startswith("bf16 left unset")


def test_an_explicit_bf16_is_kept(monkeypatch, tmp_path):
    from trl_smol import SFTConfig as SmolConfig

    monkeypatch.setattr("trl_smol.features.precision.bf16_trainable", lambda use_cpu: False)
    assert SmolConfig(output_dir=str(tmp_path), bf16=True, use_cpu=True).bf16 is True


@pytest.mark.slow
def test_course_python_example_runs_with_two_lines_changed(offline_hf_home, tmp_path):
    """The course's Python example with `from trl_smol import ...` and `smoltalk2_train(dataset)`, unmodified
    otherwise but for its step counts, cut here from 1000 steps with 5 checkpoints to 4 steps with 2: a tiny model
    on a local SmolTalk2 copy, logged into the user's own trackio run."""
    script = tmp_path / "course_sft.py"
    script.write_text(with_step_counts(COURSE_PYTHON, **TEST_STEPS))
    env = offline_env(offline_hf_home, TRACKIO_DIR=str(tmp_path / "trackio"))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]  # the user's wandb.finish() raised nothing
    out = tmp_path / "smollm3-sft-model"

    assert output.count("`tokenizer=` is deprecated") == 1
    banner = next(
        line for line in output.splitlines() if line.startswith("trl-smol ") and " active (python, run " in line
    )
    assert "chat_template=smollm3" in banner

    # The example's own schedule, at the test's step counts: a loss every logging_steps, a checkpoint every save_steps.
    steps, logging_steps, save_steps = (TEST_STEPS[key] for key in ("max_steps", "logging_steps", "save_steps"))
    assert sorted(path.name for path in out.glob("checkpoint-*")) == [
        f"checkpoint-{step}" for step in range(save_steps, steps + 1, save_steps)
    ]
    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == steps // logging_steps

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / f"checkpoint-{steps}")
    assert "Reasoning Mode" in tokenizer.chat_template

    # The metrics are in the user's run (project smollm3-sft, run course-run), not in a run of the trainer's own.
    reader = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage; "
        "print(json.dumps([v['value'] for v in SQLiteStorage.get_metric_values('smollm3-sft', 'course-run', "
        "'train/loss')]))"
    )
    logged = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=120)
    assert logged.returncode == 0, logged.stderr[-2000:]
    assert json.loads(logged.stdout.strip().splitlines()[-1]) == pytest.approx(losses)
    assert sorted(path.name for path in (tmp_path / "trackio").glob("*.db")) == ["smollm3-sft.db"]
