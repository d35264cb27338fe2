"""The SmolLM3 SFT course's examples, run as written with trl-smol installed (issue 8).

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

from trl_smol.course import COURSE_EVAL_SHARE, COURSE_LEARNING_RATES, COURSE_SAMPLE_PROMPTS, MissingSplitError
from trl_smol.mixtures import smoltalk2_mixture
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


def test_course_defaults_fill_only_what_the_user_left_unset(smoltalk2_cache):
    _, training_args, _, dataset_args = parse(COURSE_CLI + CPU)
    assert training_args.learning_rate == 5e-5  # the course's own value is kept
    assert training_args.warmup_steps == 0.1  # warmup over 10% of the steps
    assert dataset_args.test_split_size == COURSE_EVAL_SHARE  # a held-out slice for validation loss
    assert training_args.eval_strategy == "steps" and training_args.eval_steps == 200  # at every checkpoint
    assert training_args.sample_prompts == COURSE_SAMPLE_PROMPTS and training_args.sample_every_n_steps == 200
    assert training_args.max_steps == 1000 and training_args.per_device_train_batch_size == 4


def test_explicit_settings_win_over_course_defaults(smoltalk2_cache):
    argv = COURSE_CLI + CPU + ["--warmup_steps", "5", "--eval_strategy", "no", "--sample_every_n_steps", "7"]
    _, training_args, _, dataset_args = parse(argv)
    assert training_args.warmup_steps == 5 and training_args.eval_strategy == "no"
    assert dataset_args.test_split_size is None and training_args.sample_every_n_steps == 7


@pytest.mark.parametrize(("extra", "method"), [([], "full"), (["--use_peft"], "lora")])
def test_learning_rate_by_method_when_unset(smoltalk2_cache, extra, method):
    argv = [a for a in COURSE_CLI if a not in ("--learning_rate", "5e-5")] + CPU + extra
    _, training_args, _, _ = parse(argv)
    assert training_args.learning_rate == COURSE_LEARNING_RATES[method]


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
    with pytest.raises(TypeError, match=r"splits \[s1k_1\.1_think, table_gpt_no_think\].*smoltalk2_mixture"):
        SFTTrainer(model=tiny_model, train_dataset=splits, args=SmolConfig(output_dir=str(tmp_path), bf16=False))


def test_smollm3_base_gets_the_smollm3_template_even_when_its_tokenizer_has_one(tiny_tokenizer):
    from trl_smol.chat_template import smollm3_template_reason

    tiny_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # not the instruct format
    assert (
        smollm3_template_reason(tiny_tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "auto") == "SmolLM3 Base checkpoint"
    )
    assert smollm3_template_reason(tiny_tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "keep") is None


@pytest.mark.slow
def test_course_cli_example_runs_as_written(offline_hf_home, tmp_path):
    """The course command, unmodified, plus overrides appended for a short test (2 steps, short rows); on this
    machine without bf16 it trains in float32 because `bf16` is left unset."""
    trl = str(Path(sys.executable).parent / "trl")
    overrides = ["--max_steps", "2", "--logging_steps", "1", "--save_steps", "2", "--max_length", "128"]
    overrides += ["--sample_max_new_tokens", "4"]
    env = offline_env(offline_hf_home, TRACKIO_DIR=str(tmp_path / "trackio"))
    result = subprocess.run(
        [trl, "sft", *COURSE_CLI, *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    out = tmp_path / "smollm3-sft-model"

    # The mixture line, once, and the banner: SmolLM3 template applied, samples on.
    assert output.count("has no `train` split; training on SmolLM3's SFT mixture of 25 splits") == 1
    banner = next(line for line in output.splitlines() if line.startswith("trl-smol ") and " active " in line)
    assert "chat_template=smollm3" in banner and "samples" in banner

    # Training ran, with validation loss on the held-out slice.
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and any("eval_loss" in entry for entry in state["log_history"])

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

    # Samples were written for the course's default prompts.
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and len({json.dumps(s.get("prompt", s.get("messages")), sort_keys=True) for s in samples}) >= 1


# The course's Python example, with the one line the plugin asks to change (`from trl import ...`).
COURSE_PYTHON = """
from transformers import AutoModelForCausalLM, AutoTokenizer
from datasets import load_dataset
from trl_smol import SFTConfig, SFTTrainer

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
    train_dataset=dataset["train"],
    args=config,
)
trainer.train()
"""


def test_load_dataset_of_smoltalk2_sft_keeps_its_splits_and_serves_the_mixture_as_train(smoltalk2_cache, capsys):
    from datasets import DatasetDict, load_dataset
    from trl import get_dataset

    import trl_smol.trainer  # noqa: F401  (what `from trl_smol import SFTTrainer` imports)

    dataset = load_dataset("HuggingFaceTB/smoltalk2", "SFT")
    assert isinstance(dataset, DatasetDict) and "train" not in dataset and len(dataset) == 25  # as in `datasets`

    train = dataset["train"]
    assert dataset["train"] is train  # built once
    lines = [line for line in capsys.readouterr().out.splitlines() if "has no `train` split" in line]
    assert (
        len(lines) == 1 and "25 splits" in lines[0] and "smoltalk2_mixture(weights=..., think_share=...)" in lines[0]
    )
    # The same rows as `trl sft` trains on: TRL's own mixture loader, given the same mixture.
    expected = get_dataset(DatasetMixtureConfig(datasets=smoltalk2_mixture()))["train"]
    assert train.column_names == expected.column_names and train.to_list() == expected.to_list()

    with pytest.raises(MissingSplitError, match=r"Split `s1k` not found .* Available splits: .*s1k_1\.1_think"):
        dataset["s1k"]
    with pytest.raises(KeyError):  # still a KeyError for code that catches it
        dataset["validation"]


def test_other_datasets_loaded_whole_are_untouched(tmp_path):
    from datasets import DatasetDict, load_dataset

    import trl_smol.trainer  # noqa: F401

    (tmp_path / "data.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    dataset = load_dataset("json", data_files=str(tmp_path / "data.jsonl"))
    assert type(dataset) is DatasetDict
    with pytest.raises(KeyError) as raised:
        dataset["test"]
    assert not isinstance(raised.value, MissingSplitError)


@pytest.mark.parametrize(("machine_has_bf16", "expected"), [(False, False), (True, True)])
def test_bf16_left_unset_follows_the_machine(monkeypatch, tmp_path, machine_has_bf16, expected):
    """TRL's default (bf16) would stop the course example on a machine without bf16; unset, it follows the machine."""
    import trl_smol.config
    from trl_smol import SFTConfig as SmolConfig
    from trl_smol.config import explicit_fields

    monkeypatch.setattr(trl_smol.config, "_bf16_trainable", lambda use_cpu: machine_has_bf16)
    args = SmolConfig(output_dir=str(tmp_path), use_cpu=True)  # use_cpu: transformers accepts bf16 either way
    assert args.bf16 is expected and "bf16" not in explicit_fields(args)  # a preset may still choose


def test_an_explicit_bf16_is_kept(monkeypatch, tmp_path):
    import trl_smol.config
    from trl_smol import SFTConfig as SmolConfig

    monkeypatch.setattr(trl_smol.config, "_bf16_trainable", lambda use_cpu: False)
    assert SmolConfig(output_dir=str(tmp_path), bf16=True, use_cpu=True).bf16 is True


@pytest.mark.slow
def test_course_python_example_runs_as_written(offline_hf_home, tmp_path):
    """The course's Python example, with `from trl_smol import ...` in place of `from trl import ...`, unmodified
    otherwise: 1000 steps of a tiny model on a local SmolTalk2 copy."""
    script = tmp_path / "course_sft.py"
    script.write_text(COURSE_PYTHON)
    env = offline_env(offline_hf_home, TRACKIO_DIR=str(tmp_path / "trackio"))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    out = tmp_path / "smollm3-sft-model"

    assert output.count("has no `train` split; training on SmolLM3's SFT mixture of 25 splits") == 1
    assert output.count("`tokenizer=` is deprecated") == 1
    defaults = next(line for line in output.splitlines() if "course defaults for what you left unset" in line)
    assert "warmup_steps=0.1" in defaults and "validation loss on 0.1% held out, every 200 steps" in defaults
    assert "learning_rate" not in defaults  # the example sets it
    banner = next(line for line in output.splitlines() if line.startswith("trl-smol ") and " active (python)" in line)
    assert "chat_template=smollm3" in banner and "samples" in banner

    state = json.loads((out / "checkpoint-1000" / "trainer_state.json").read_text())
    assert state["global_step"] == 1000
    assert [entry["step"] for entry in state["log_history"] if "eval_loss" in entry] == [200, 400, 600, 800, 1000]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "checkpoint-1000")
    assert "Reasoning Mode" in tokenizer.chat_template
    generation = json.loads((out / "checkpoint-1000" / "generation_config.json").read_text())
    eos = generation["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {sample["step"] for sample in samples} >= {0, 200, 1000} and len({s["prompt"] for s in samples}) == 3
