"""How a run that cannot start says so: one block, the cause last and once, naming the model, dataset, file or row and
what to do, within seconds, online and offline alike; and it leaves nothing behind that it did not need.

The Hub cases run against an endpoint that refuses connections (`HF_ENDPOINT=http://127.0.0.1:9`), which is what a
machine without a network sees: the tests never reach the real Hub.
"""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from trl import DatasetMixtureConfig
from trl.scripts.utils import DatasetConfig

from trl_smol.data import DataFileError, check_local_data_files
from trl_smol.data.input_files import check_data_file
from trl_smol.hub import HubAccessError, check_hub_repo
from trl_smol.models import ModelResolutionError, resolve_model_name
from trl_smol.outcome import cause_line, is_plugin_error
from trl_smol.run_safety import OutputDirLock
from trl_smol.samples import SamplePromptError, load_prompts

TRL = os.path.join(os.path.dirname(sys.executable), "trl")
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def no_network(monkeypatch):
    """Online mode, on a machine whose Hub endpoint refuses connections."""
    from huggingface_hub import constants

    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)


# --- the Hub: a model or dataset neither cached nor reachable ------------------------------------------------------


def test_offline_a_model_not_in_the_cache_is_one_error_naming_it_and_the_ways_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError) as error:
        resolve_model_name("someone/not-cached-model")
    message = str(error.value)
    assert "The model `someone/not-cached-model` (`model_name_or_path`) is neither a local folder" in message
    assert "`hf download someone/not-cached-model`" in message and "unset HF_HUB_OFFLINE" in message


def test_online_without_a_network_a_dataset_is_named_at_once_with_the_offline_fix_and_no_retry(no_network, caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(HubAccessError) as error:
        check_hub_repo("someone/some-data", "dataset", setting="dataset_name")
    message = str(error.value)
    assert message.startswith("Cannot read the dataset `someone/some-data` (`dataset_name`) from the Hugging Face Hub")
    assert f"{UNREACHABLE} cannot be reached from this machine" in message
    assert "`hf download someone/some-data --repo-type dataset`" in message and "HF_HUB_OFFLINE=1" in message
    assert "Retrying" not in caplog.text  # huggingface_hub's backoff (1+2+4+8+8 s) is not entered


def test_a_repository_the_hub_answered_for_is_not_asked_again_by_the_training_process(monkeypatch):
    import trl_smol.hub as hub

    asked = []
    monkeypatch.setenv(hub.CHECKED_ENV, "")  # restored (unset) after the test
    monkeypatch.setattr(hub, "offline", lambda kind: False)
    monkeypatch.setattr(hub, "_hub_answer", lambda *args: asked.append(args) or (None, False))
    check_hub_repo("someone/some-data", "dataset", setting="dataset_name")  # the `trl sft` process asks once
    check_hub_repo("someone/some-data", "dataset", setting="path")  # its training process inherits the answer
    assert asked == [("someone/some-data", "dataset", None)]
    assert os.environ[hub.CHECKED_ENV] == "dataset:someone/some-data@"
    check_hub_repo("someone/some-data", "model", setting="model_name_or_path")  # another kind is another repo
    assert len(asked) == 2


def test_a_recipe_dataset_on_the_hub_is_checked_before_anything_loads(no_network):
    from trl import ScriptArguments

    with pytest.raises(HubAccessError, match=r"dataset `someone/some-data` \(`dataset_name`\)"):
        check_local_data_files(ScriptArguments(dataset_name="someone/some-data"), DatasetMixtureConfig())
    mixture = DatasetMixtureConfig(datasets=[DatasetConfig(path="someone/other-data")])
    with pytest.raises(HubAccessError, match=r"dataset `someone/other-data` \(`path`\)"):
        check_local_data_files(None, mixture)


def test_a_missing_path_says_where_it_was_looked_for_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mixture = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files="data/missing.jsonl")])
    with pytest.raises(DataFileError) as error:
        check_local_data_files(None, mixture)
    assert str(error.value).startswith(
        f"`data_files: data/missing.jsonl` does not exist (looked for {tmp_path}/data/missing.jsonl: paths in a "
        f"recipe resolve against the working directory, {tmp_path}, not against the recipe's folder)."
    )
    pattern = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files="data/*.jsonl")])
    with pytest.raises(DataFileError, match=r"`data_files: data/\*\.jsonl` matches no file \(looked for"):
        check_local_data_files(None, pattern)
    with pytest.raises(ModelResolutionError, match=r"`model_name_or_path: \./models/mine` does not exist \(looked"):
        resolve_model_name("./models/mine")
    with pytest.raises(SamplePromptError, match=r"`sample_prompts: prompts/mine\.jsonl` does not exist \(looked for"):
        load_prompts("prompts/mine.jsonl")


# --- what counts as the plugin's own error -------------------------------------------------------------------------


def raised(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001 - the test looks at what was raised
        return error, error.__traceback__
    raise AssertionError("nothing was raised")


def test_an_error_the_plugin_raises_with_its_message_is_its_own_and_a_library_error_through_it_is_not(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    error, traceback = raised(lambda: check_data_file(str(empty)))
    assert is_plugin_error(error, traceback)
    assert cause_line(error) == f"DataFileError: Data file {empty} is empty (0 bytes). " + (
        "Write the data into it, or remove it from the run."
    )
    assert not is_plugin_error(*raised(lambda: check_data_file(str(tmp_path / "missing.jsonl"))))  # os.path's
    assert not is_plugin_error(*raised(lambda: 1 / 0))  # the caller's own code


# --- the output dir of a run that wrote nothing --------------------------------------------------------------------


def test_a_run_that_created_its_output_dir_and_wrote_nothing_leaves_no_folder_behind(tmp_path):
    lock = OutputDirLock(tmp_path / "runs" / "first", run_id="r1").acquire()
    lock.release()
    assert not (tmp_path / "runs").exists()  # both folders were the run's, and empty

    lock = OutputDirLock(tmp_path / "runs" / "second", run_id="r2").acquire()
    (tmp_path / "runs" / "second" / "samples.jsonl").write_text("{}\n")
    lock.release()
    assert sorted(p.name for p in (tmp_path / "runs" / "second").iterdir()) == [".trl_smol.lock", "samples.jsonl"]

    (tmp_path / "mine").mkdir()  # a folder the user made is the user's
    OutputDirLock(tmp_path / "mine", run_id="r3").acquire().release()
    assert (tmp_path / "mine").is_dir()


# --- through `trl sft` ---------------------------------------------------------------------------------------------


def run_trl_sft(recipe: dict, folder: Path, **env_changes) -> tuple[int, str]:
    path = folder / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env_changes}
    for name in [name for name, value in env_changes.items() if value is None]:
        env.pop(name)
    env.pop("TRL_SMOL_TRACEBACK", None)
    result = subprocess.run(
        [TRL, "sft", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=folder, timeout=300,
    )  # fmt: skip
    return result.returncode, result.stdout


@pytest.mark.slow
def test_a_bad_row_stops_trl_sft_with_one_block_the_cause_last_and_once_and_no_output_dir_left(
    tmp_path, tiny_model_dir, chat_rows
):
    rows = [*chat_rows[:3], {"messages": [{"role": "bot", "content": "Hi"}, {"role": "assistant", "content": "x"}]}]
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = {
        "model_name_or_path": str(tiny_model_dir),
        "datasets": [{"path": "json", "data_files": "chats.jsonl"}],  # relative: to the working directory
        "output_dir": "runs/bad-row",
        "bf16": False,
        "report_to": "none",
    }
    code, output = run_trl_sft(recipe, tmp_path)
    assert code == 1, output[-3000:]
    lines = output.rstrip("\n").split("\n")
    # Row 4 is line 4 of the file: rows are counted from 1 everywhere.
    assert lines[-1].startswith(
        "InvalidConversationError: Dataset 'train', row 4, field `messages[0].role`: unknown role: 'bot'"
    ), output[-3000:]
    assert output.count("unknown role") == 1 and "Traceback (most recent call last)" not in output
    saved = re.fullmatch(r"trl sft: the training process failed \(exit status 1\); traceback in (\S+) .*", lines[-2])
    assert saved is not None, lines[-2]
    assert "Traceback (most recent call last)" in Path(saved.group(1)).read_text()
    for start in ("⏳ Starting trl sft", "⏳ Training process started"):
        assert sum(line.startswith(start) for line in lines) == 1, output[:2000]
    assert "gemm_4bit_forward" not in output  # bitsandbytes' Hub kernel record, imported with PEFT
    assert not (tmp_path / "runs").exists()  # the run made the folder and wrote nothing in it


@pytest.mark.slow
def test_without_a_network_trl_sft_names_the_model_and_the_offline_fix_within_seconds(tmp_path, chat_rows):
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in chat_rows))
    recipe = {
        "model_name_or_path": "someone/not-cached-model",
        "datasets": [{"path": "json", "data_files": "chats.jsonl"}],
        "output_dir": "out",
        "report_to": "none",
    }
    unset = dict.fromkeys(OFFLINE_VARIABLES)
    code, output = run_trl_sft(recipe, tmp_path, HF_ENDPOINT=UNREACHABLE, **unset)
    assert code == 1, output[-3000:]
    last = output.rstrip("\n").split("\n")[-1]
    assert last.startswith(
        "ModelResolutionError: Cannot read the model `someone/not-cached-model` (`model_name_or_path`) from the "
        f"Hugging Face Hub: {UNREACHABLE} cannot be reached from this machine"
    ), output[-3000:]
    assert "HF_HUB_OFFLINE=1" in last and "Retrying in" not in output  # no backoff before the answer
