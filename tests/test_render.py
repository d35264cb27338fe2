"""`trl-smol render`: examples as the trainer sees them, with counts and warnings."""

import json
import os

import pytest
from datasets import Dataset

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig
from trl_smol.commands import main
from trl_smol.commands.render import render_examples
from trl_smol.testing import tiny_smollm3_tokenizer

THINKING = {
    "messages": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n4"},
    ]
}
EMPTY_NO_THINK = {
    "messages": [
        {"role": "system", "content": "Be brief. /no_think"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": ""},
    ]
}
REASONING_IN_NO_THINK = {
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nHm.\n</think>\nHello"}],
    "chat_template_kwargs": {"enable_thinking": False},
}
NO_REASONING_IN_THINK = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def config(**values):
    return SmolSFTConfig(output_dir=f"/tmp/trl_smol_tests_unused-{os.getpid()}", bf16=False, **values)


def rendered(rows, **values):
    tokenizer = tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)
    return [r for _, r in render_examples(Dataset.from_list(rows), tokenizer, config(**values), count=len(rows))]


def test_counts_and_trained_tokens_follow_assistant_only_loss():
    (masked,) = rendered([THINKING], assistant_only_loss=True, max_length=None)
    (full,) = rendered([THINKING], max_length=None)
    assert masked.kept == full.kept == len(full.input_ids)
    assert full.trained == len(full.input_ids)
    tokenizer = tiny_smollm3_tokenizer()
    trained_text = tokenizer.decode([t for t in masked.labels if t != -100])
    assert trained_text == "<|im_start|>assistant\n<think>\nAdd them.\n</think>\n4<|im_end|>\n"
    assert masked.trained == len(tokenizer(trained_text, add_special_tokens=False)["input_ids"])
    assert masked.warnings == []


def test_warns_about_empty_turns_and_reasoning_that_disagrees_with_the_mode():
    empty, missing = rendered([EMPTY_NO_THINK, NO_REASONING_IN_THINK])
    (reasoning,) = rendered([REASONING_IN_NO_THINK])  # alone: `Dataset.from_list` takes its keys from the first row
    assert empty.warnings == ["empty assistant turn: messages[2]"]
    assert reasoning.warnings == [
        "messages[1] has reasoning but the mode is /no_think (an empty think block is rendered)"
    ]
    assert missing.warnings == ["messages[1] has no <think> reasoning but the mode is /think"]


@pytest.mark.parametrize("mode", ["keep_start", "keep_end"])
def test_warns_when_max_length_cuts_the_example(mode):
    (example,) = rendered([THINKING], assistant_only_loss=True, max_length=100, truncation_mode=mode)
    assert example.kept == 100
    cut = len(example.input_ids) - 100
    if mode == "keep_start":  # the header survives, the assistant turn at the end is lost
        assert example.trained == 0
        assert example.warnings[0].startswith(f"cut by max_length: {cut} of {len(example.input_ids)} tokens dropped")
        assert (
            "cut to nothing by max_length: no trained token is left (training stops at this row with "
            "`invalid_rows: error`)" in example.warnings
        )
        (dropped,) = rendered(
            [THINKING], assistant_only_loss=True, max_length=100, truncation_mode=mode, invalid_rows="drop"
        )
        assert "cut to nothing by max_length: no trained token is left (TRL drops the row)" in dropped.warnings
    else:
        assert example.trained > 0 and example.warnings[0].endswith("0 of them trained")


def test_cli_renders_a_recipe(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # rich wraps at the terminal width
    data = tmp_path / "data"
    data.mkdir()
    rows = [THINKING, EMPTY_NO_THINK, NO_REASONING_IN_THINK]
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndataset_name: {data}\noutput_dir: {tmp_path / 'out'}\n"
        "assistant_only_loss: true\nmax_length: 2048\nbf16: false\n"
    )
    assert main(["render", "--config", str(recipe), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "chat template: SmolLM3 (SmolLM3 model whose tokenizer has no chat template)" in out
    assert "loss on assistant turns only" in out
    assert "row 1" in out and "row 2" in out and "row 3" not in out  # counted from 1, as in training's errors
    assert "Today Date: 08 July 2025" in out
    assert "warning row 2: empty assistant turn: messages[2]" in out
    assert "trained" in out and "kept" in out


def write_render_recipe(tmp_path, model_dir, rows, extra=""):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {model_dir}\ndataset_name: {data}\noutput_dir: {tmp_path / 'out'}\n"
        f"assistant_only_loss: true\nbf16: false\n{extra}"
    )
    return recipe


def test_cli_prints_a_character_split_over_tokens_whole(tmp_path, tiny_model_dir, capsys, monkeypatch):
    # The tiny tokenizer is byte-level: "🟢" is four tokens, each of which alone decodes to a replacement character.
    monkeypatch.setenv("COLUMNS", "500")
    row = {"messages": [{"role": "user", "content": "Colour?"}, {"role": "assistant", "content": "🟢 Answer: green"}]}
    recipe = write_render_recipe(tmp_path, tiny_model_dir, [row], "max_length: 2048\n")
    assert main(["render", "--config", str(recipe), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "🟢 Answer: green" in out and "\ufffd" not in out


def test_cli_checks_every_row_as_training_does_cut_to_nothing_included(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")
    # A long user turn puts every assistant token after max_length (the tiny byte-level tokenizer makes the template
    # alone about 830 tokens): training stops at that row, and so does render.
    long_row = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]}
    short_row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    recipe = write_render_recipe(tmp_path, tiny_model_dir, [short_row, long_row], "max_length: 1200\n")
    assert main(["render", "--config", str(recipe), "-n", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "row 2" in err[-1] and "cuts it to nothing trainable" in err[-1]

    (tmp_path / "out").mkdir(exist_ok=True)
    with open(recipe, "a") as file:
        file.write("invalid_rows: drop\n")
    assert main(["render", "--config", str(recipe), "-n", "1"]) == 0
    assert "1 cut to nothing by max_length=1200, dropped by TRL (invalid_rows: drop)." in capsys.readouterr().out
