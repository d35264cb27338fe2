"""The data a run reads: a bad file is one error naming it (and the line), a row cut to nothing trainable is counted.

`datasets` fails on an empty JSON-lines file with a bare `StopIteration` and on a file that is not UTF-8 with pyarrow's
`UnicodeDecodeError`; neither names the file. The plugin checks every local file first, and tells which rows
`max_length` leaves without a trained token (TRL would drop them silently).
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from datasets import Dataset
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments
from trl.scripts.utils import DatasetConfig

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.data import (
    DataFileError,
    RowCutToNothingError,
    check_local_data_files,
    get_dataset,
    prepare_conversations,
    tokenize_conversations,
)
from trl_smol.parser import SmolTrlParser
from trl_smol.testing import tiny_smollm3_model, tiny_smollm3_tokenizer

TRL = os.path.join(os.path.dirname(sys.executable), "trl")
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
GOOD_LINE = json.dumps(CHAT) + "\n"


def config(**values):
    return SmolSFTConfig(
        output_dir=f"/tmp/trl_smol_tests_unused-{os.getpid()}", bf16=False, report_to="none", **values
    )


def load_mixture(path, builder="json", **entry):
    """The plugin's `get_dataset` (what `trl sft` calls for a `datasets:` mixture) on one local file."""
    return get_dataset(DatasetMixtureConfig(datasets=[DatasetConfig(path=builder, data_files=str(path), **entry)]))


def write_parquet(path, columns):
    Dataset.from_dict(columns).to_parquet(str(path))


# --- every local data file: one error naming the file ------------------------------------------------------------

# (file name, bytes, what the error says): each is a file `datasets` would fail on without naming it.
BAD_FILES = [
    ("empty.jsonl", b"", "is empty (0 bytes)"),
    ("blank.jsonl", b"\n\n  \n", "has no data: only blank lines"),
    ("latin1.jsonl", GOOD_LINE.encode() + '{"messages": "caf\xe9"}\n'.encode("latin-1"), "is not UTF-8 text: line 2"),
    ("utf16.jsonl", GOOD_LINE.encode("utf-16"), "is not UTF-8 text: line 1 (byte 0) has the byte 0xff"),
    ("prose.jsonl", (GOOD_LINE * 2 + "Hello, how are you?\n").encode(), "line 3 is not JSON (Expecting value"),
    ("cut.jsonl", (GOOD_LINE + '{"messages": [\n').encode(), "line 2 is not JSON"),
    ("list.jsonl", (GOOD_LINE + "[1, 2]\n").encode(), "line 2 is a JSON list, not an object"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_bad_json_lines_file_is_one_error_naming_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=re.escape(message)) as error:
        load_mixture(path)
    assert str(error.value).startswith(f"Data file {path}")


def test_a_parquet_or_csv_file_without_messages_says_which_columns_it_has(tmp_path):
    write_parquet(tmp_path / "qa.parquet", {"question": ["2+2?"], "answer": ["4"]})
    (tmp_path / "qa.csv").write_text("question,answer\n2+2?,4\n")
    for name, builder in (("qa.parquet", "parquet"), ("qa.csv", "csv")):
        path = tmp_path / name
        with pytest.raises(DataFileError) as error:
            load_mixture(path, builder, columns=["messages"])  # the entry keeps `messages`: the run expects chats
        assert str(error.value).startswith(
            f"Data file {path} has no `messages` column; its columns are question, answer."
        )


def test_a_file_that_is_not_what_its_format_says_is_named(tmp_path):
    (tmp_path / "fake.parquet").write_text("not parquet")
    (tmp_path / "header.csv").write_text("messages\n")
    with pytest.raises(DataFileError, match=r"fake.parquet is not a readable parquet file"):
        load_mixture(tmp_path / "fake.parquet", "parquet")
    with pytest.raises(DataFileError, match=r"header.csv has a header line \(messages\) but no rows"):
        load_mixture(tmp_path / "header.csv", "csv")


def test_valid_files_load_as_before(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\n" + GOOD_LINE.encode())
    (tmp_path / "doc.json").write_text(json.dumps([CHAT, CHAT], indent=2))  # one JSON document, as datasets reads it
    write_parquet(tmp_path / "chats.parquet", {"messages": [CHAT["messages"]]})
    assert len(load_mixture(tmp_path / "bom.jsonl")["train"]) == 2
    assert len(load_mixture(tmp_path / "doc.json")["train"]) == 2
    assert load_mixture(tmp_path / "chats.parquet", "parquet")["train"].column_names == ["messages"]


def test_only_the_first_mib_is_read_and_datasets_reads_the_rest(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(GOOD_LINE * (2 * 1024 * 1024 // len(GOOD_LINE)) + "not json\n")
    check_local_data_files(None, DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(path))]))


def test_dataset_name_directory_every_split_file_is_checked(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(GOOD_LINE)
    (data / "test.jsonl").write_text(
        ""
    )  # `load_dataset` reads every split: "Instruction 'test' corresponds to no data"
    with pytest.raises(DataFileError, match=re.escape(f"Data file {data / 'test.jsonl'} is empty")):
        check_local_data_files(ScriptArguments(dataset_name=str(data)), DatasetMixtureConfig(), config())


def test_dataset_name_pointing_to_one_file_says_how_to_load_it(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text(GOOD_LINE)
    with pytest.raises(DataFileError) as error:
        check_local_data_files(ScriptArguments(dataset_name=str(path)), DatasetMixtureConfig(), config())
    assert f"`dataset_name: {path}` is a file" in str(error.value)
    assert f"`datasets: [{{path: json, data_files: {path}}}]`" in str(error.value)


def test_the_columns_the_run_trains_on_follow_its_arguments(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"content": "Some text to learn."}) + "\n")
    script_args = ScriptArguments(dataset_name=str(data))
    with pytest.raises(DataFileError, match=r"has no `messages` column; its columns are content\. The run trains on"):
        check_local_data_files(script_args, DatasetMixtureConfig(), config())
    check_local_data_files(script_args, DatasetMixtureConfig(), config(dataset_text_field="content"))


def test_the_recipe_parser_checks_the_files_before_anything_loads(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: m\noutput_dir: out\ndatasets:\n  - path: json\n    data_files: {path}\n")
    parser = SmolTrlParser((ScriptArguments, SmolSFTConfig, ModelConfig, DatasetMixtureConfig))
    with pytest.raises(DataFileError, match=re.escape(f"Data file {path} is empty")):
        parser.parse_args_and_config(["--config", str(recipe)])


# --- rows that max_length cuts to nothing trainable -------------------------------------------------------------

# Without a system message, the think-mode header carries SmolLM3's long default system prompt (814 tokens with the
# test tokenizer): with max_length 128 no assistant token is left. A short system prompt of its own fits.
BRIEF = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
}
DEFAULT_PROMPT = {"messages": BRIEF["messages"][1:]}


def tokenize(rows, dataset_name="train", **values):
    tokenizer = tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)
    args = config(assistant_only_loss=True, max_length=128, **values)
    dataset = prepare_conversations(Dataset.from_list(rows), args=args, processing_class=tokenizer)
    return tokenize_conversations(dataset, tokenizer, args=args, dataset_name=dataset_name)


def test_a_row_cut_to_nothing_is_an_error_naming_row_tokens_and_the_fix():
    with pytest.raises(RowCutToNothingError) as error:
        tokenize([BRIEF, DEFAULT_PROMPT])
    message = str(error.value)
    assert re.match(
        r"Dataset 'train', row 2: max_length=128 cuts it to nothing trainable: it has (\d+) tokens and all (\d+) of "
        r"its assistant tokens start after token 128 \(the first is token \d+\)",
        message,
    )
    assert "Raise `max_length`" in message and "shorten the system prompt" in message
    assert message.endswith("or set `invalid_rows: drop` to skip such rows (a count is printed).")


def test_keep_end_names_the_assistant_tokens_before_the_kept_end():
    tail = {"messages": [*BRIEF["messages"], {"role": "user", "content": "Thanks! " * 80}]}
    with pytest.raises(RowCutToNothingError, match=r"row 1: .* end before its last 128 .* truncation_mode=keep_end"):
        tokenize([tail], truncation_mode="keep_end")


def test_drop_lists_cut_rows_in_the_dropped_rows_table_and_trl_drops_them(tmp_path, capsys):
    tokenizer = tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)
    args = config(assistant_only_loss=True, max_length=128, invalid_rows="drop")
    args.output_dir = str(tmp_path)
    rows = [BRIEF, DEFAULT_PROMPT, BRIEF, DEFAULT_PROMPT]
    trainer = SmolSFTTrainer(
        tiny_smollm3_model(tokenizer), args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    assert len(trainer.train_dataset) == 2  # TRL's own drop, unchanged
    printed = capsys.readouterr().err
    assert "dropped 2 of 4 rows of dataset 'train'" in printed
    assert re.search(r"cut to nothing by max_length\s*│\s*2\s*│\s*2", printed)  # reason, count, first row


def test_packing_cuts_nothing_per_row_and_valid_rows_change_nothing():
    assert len(tokenize([BRIEF, DEFAULT_PROMPT], packing=True)) == 2
    assert len(tokenize([DEFAULT_PROMPT], dataset_name="eval", eval_packing=True)) == 1  # TRL packs eval sets so
    with pytest.raises(RowCutToNothingError, match="Dataset 'eval', row 1"):
        tokenize([DEFAULT_PROMPT], dataset_name="eval", packing=True, eval_packing=False)
    unchanged = tokenize([BRIEF], invalid_rows="drop")
    assert unchanged.column_names == ["messages", "chat_template_kwargs", "input_ids", "labels"]


# --- through the real `trl sft` ------------------------------------------------------------------------------------


def trl_sft(tmp_path, model_dir, data_lines):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(
            f"""\
            model_name_or_path: {model_dir}
            output_dir: {tmp_path / "out"}
            max_steps: 1
            bf16: false
            report_to: none
            """
        )
        + data_lines
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([TRL, "sft", "--config", str(recipe)], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_trl_sft_stops_on_an_empty_mixture_file_naming_it(tmp_path, tiny_model_dir):
    path = tmp_path / "chats.jsonl"
    path.write_text("")
    result = trl_sft(tmp_path, tiny_model_dir, f"datasets:\n  - path: json\n    data_files: {path}\n")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"DataFileError: Data file {path} is empty (0 bytes)" in last_line
    assert "StopIteration" not in result.stderr


@pytest.mark.slow
def test_trl_sft_stops_on_a_file_that_is_not_utf8_in_a_dataset_directory(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_bytes(GOOD_LINE.encode() + '{"messages": "caf\xe9"}\n'.encode("latin-1"))
    result = trl_sft(tmp_path, tiny_model_dir, f"dataset_name: {data}\n")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"Data file {data / 'train.jsonl'} is not UTF-8 text: line 2" in last_line
