"""What a user sees in a run with the plugin: no warning they cannot act on, a line before every long step, and nothing
printed onto the progress bar (trl_smol/console.py; docs/hook.md, "The console")."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from contextlib import contextmanager

import pytest
from rich.console import Console
from rich.text import Text
from tqdm import tqdm

from trl_smol.console import (
    KNOWN_LOG_RECORDS,
    KNOWN_WARNINGS,
    SAME_OUTPUT_ENV,
    RunConsole,
    quiet_known_log_records,
    quiet_known_warnings,
    setting_names,
    write,
    write_text,
)
from trl_smol.launch import accelerate_launch_arguments, has_accelerator

TRL = os.path.join(os.path.dirname(sys.executable), "trl")
ACCELERATE_BLOCK = "were not passed to `accelerate launch` and had defaults used instead"


@contextmanager
def shown():
    """The messages of the warnings that reach the display in the block (filters applied, nothing deduplicated)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        messages: list[str] = []
        yield messages
        messages.extend(str(record.message) for record in records)


def deprecated_model_calls(model) -> None:
    """What PEFT and TRL do with a model during a run (get_peft_model; unwrapping it to generate samples)."""
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    model.gradient_checkpointing_disable()


# --- the identified warnings, raised by the real code that raises them in a run ------------------------------------


def test_trls_default_gradient_checkpointing_is_not_reported_as_deprecated_in_the_block(tmp_path):
    from trl_smol import SmolSFTConfig

    with shown() as outside:
        SmolSFTConfig(output_dir=str(tmp_path))  # nothing set: TRL's default meets transformers' rename
    assert any("`gradient_checkpointing` is deprecated" in message for message in outside)
    with shown() as inside, quiet_known_warnings():
        SmolSFTConfig(output_dir=str(tmp_path))
    assert inside == []


def test_a_user_who_wrote_gradient_checkpointing_still_sees_that_it_is_deprecated(tmp_path):
    from trl_smol import SmolSFTConfig

    with shown() as inside, quiet_known_warnings(user_settings={"gradient_checkpointing"}):
        SmolSFTConfig(output_dir=str(tmp_path), gradient_checkpointing=True)
    assert any("`gradient_checkpointing` is deprecated" in message for message in inside)  # renaming the key fixes it


def test_renamed_model_methods_called_by_peft_and_trl_are_quiet_in_the_block(tiny_model):
    with shown() as outside:
        deprecated_model_calls(tiny_model)
    assert len(outside) == 3 and all("is deprecated" in message for message in outside)
    with shown() as inside, quiet_known_warnings():
        deprecated_model_calls(tiny_model)
    assert inside == []


@pytest.mark.skipif(has_accelerator(), reason="the warning is about a machine without an accelerator")
def test_pin_memory_without_an_accelerator_is_quiet_unless_the_recipe_asked_for_it():
    from torch.utils.data import DataLoader

    with shown() as outside:
        next(iter(DataLoader([1, 2], pin_memory=True)))  # transformers' default dataloader_pin_memory=True
    assert any("'pin_memory' argument is set as true" in message for message in outside)
    with shown() as inside, quiet_known_warnings():
        next(iter(DataLoader([1, 2], pin_memory=True)))
    assert inside == []
    with shown() as asked, quiet_known_warnings(user_settings={"dataloader_pin_memory"}):
        next(iter(DataLoader([1, 2], pin_memory=True)))
    assert asked != []


def test_a_warning_is_identified_by_its_module_too_and_every_other_warning_stays():
    with shown() as inside, quiet_known_warnings():
        warnings.warn_explicit(  # the same words, from the user's own code: not one of the identified warnings
            "`gradient_checkpointing_enable` is deprecated", FutureWarning, "my_callback.py", 3, module="my_callback"
        )
        warnings.warn("Sample prompt 0 has 826 tokens; its start is cut off.", UserWarning, stacklevel=1)
    assert len(inside) == 2


def test_with_W_or_PYTHONWARNINGS_the_user_decides_and_nothing_is_quieted(tiny_model, monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", ["default"])
    with shown() as inside, quiet_known_warnings():
        deprecated_model_calls(tiny_model)
    assert len(inside) == 3


def test_the_block_leaves_the_warning_filters_and_transformers_handlers_as_they_were():
    filters, handlers = list(warnings.filters), list(logging.getLogger("transformers").handlers)
    with quiet_known_warnings():
        pass
    assert warnings.filters == filters and logging.getLogger("transformers").handlers == handlers


def test_every_identified_warning_says_where_it_comes_from_and_why_no_user_can_act_on_it():
    for known in KNOWN_WARNINGS:
        re.compile(known.message)
        assert known.module and len(known.source) > 40


def test_the_settings_a_command_line_names_include_its_recipes_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("gradient_checkpointing: true\nlearning_rate: 1.0e-4\n")
    argv = ["--config", str(recipe), "--max-steps=3", "--bf16", "false"]
    assert setting_names(argv) == {"config", "gradient_checkpointing", "learning_rate", "max_steps", "bf16"}
    assert setting_names(["--config", str(tmp_path / "missing.yaml")]) == {"config"}  # TRL reports the missing file


def test_trl_sfts_parser_reports_gradient_checkpointing_as_deprecated_only_when_the_recipe_writes_it(tmp_path):
    from trl_smol.commands.arguments import recipe_parser  # the parser `trl sft` reads recipes with

    for written, expected in (("", False), ("gradient_checkpointing: true\n", True)):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"model_name_or_path: m\noutput_dir: {tmp_path / 'out'}\n{written}")
        with shown() as seen:
            recipe_parser().parse_args_and_config(["--config", str(recipe)])
        assert any("`gradient_checkpointing` is deprecated" in message for message in seen) == expected, written


# --- third-party log records no user can act on, and `trl-smol` commands that load only what they run ---------------


def test_bitsandbytes_hub_kernel_record_is_dropped_and_every_other_record_of_its_logger_kept(caplog):
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    before = list(logger.filters)
    try:
        quiet_known_log_records()  # an earlier test in this process (a `trl-smol` command) may have called it too
        added = [f for f in logger.filters if f not in before]
        quiet_known_log_records()  # once per process: a second call adds nothing
        assert [f for f in logger.filters if f not in before] == added
        assert len([f for f in logger.filters if type(f).__name__ == "_DropKnownRecord"]) == 1
        with caplog.at_level(logging.WARNING, logger=logger.name):
            # bitsandbytes 0.50's words, when `kernels` refuses kernels-community's kernel at import
            logger.warning(
                "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                "`pip install kernels` and the kernels >= 0.11.1",
                "untrusted repository",
            )
            logger.warning("Any other bitsandbytes record")
        assert [record.getMessage() for record in caplog.records] == ["Any other bitsandbytes record"]
    finally:
        logger.filters = before


def test_every_identified_log_record_says_where_it_comes_from_and_why_no_user_can_act_on_it():
    for known in KNOWN_LOG_RECORDS:
        re.compile(known.message)
        assert known.logger and len(known.source) > 40


LIGHT_COMMANDS_SCRIPT = """
import sys
from trl_smol.commands import main
for argv in (["--version"], ["--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = ("torch", "transformers", "trl", "peft", "bitsandbytes", "trl_smol.commands.doctor")
print("loaded:", sorted(name for name in heavy if name in sys.modules))
"""


def test_trl_smol_version_and_help_load_neither_torch_nor_any_subcommand():
    result = subprocess.run([sys.executable, "-c", LIGHT_COMMANDS_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "trl-smol 0." in result.stdout
    assert all(name in result.stdout for name in ("callbacks", "render", "doctor", "estimate"))  # --help lists them
    assert "loaded: []" in result.stdout


# --- nothing printed onto the progress bar --------------------------------------------------------------------------


def bar_then(write_line) -> tuple[str, str]:
    """What a stream holds before and after a line written while a tqdm bar is drawn on it."""
    stream = io.StringIO()
    bar = tqdm(total=3, file=stream, ncols=60, mininterval=0)
    bar.update(1)
    write_line(stream)
    before, after = stream.getvalue().split("a line\n")
    bar.close()
    return before, after


def test_a_line_written_during_a_progress_bar_starts_on_the_cleared_bar_line_and_the_bar_is_drawn_again_below():
    for write_line in (
        lambda stream: write_text("a line\n", file=stream),
        lambda stream: write(Text("a line"), console=Console(file=stream)),
    ):
        before, after = bar_then(write_line)
        bar_text, cleared, rest = before.rsplit("\r", 2)
        assert "1/3" in bar_text and cleared.strip() == "" and rest == ""  # the bar is wiped, the line starts at 0
        assert "1/3" in after  # and the bar is drawn again under it


GLUE_SCRIPT = """
import sys, warnings
from tqdm import tqdm
from transformers.utils import logging
from trl_smol.console import quiet_known_warnings
bar = tqdm(total=3, file=sys.stderr, mininterval=0)
bar.update(1)
warnings.warn("stock: glued", UserWarning)
with quiet_known_warnings():
    warnings.warn("inside: an actionable warning", UserWarning)
    logging.get_logger("transformers.any").warning("inside: a transformers log record")
bar.close()
"""


def test_in_the_block_warnings_and_transformers_logs_are_printed_above_the_bar_not_onto_it():
    result = subprocess.run([sys.executable, "-c", GLUE_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.split("\n")
    glued = next(line for line in lines if "stock: glued" in line)
    assert "1/3" in glued.split("\r")[-1]  # outside the block (stock): the warning follows the bar on its line
    for text in ("inside: an actionable warning", "inside: a transformers log record"):
        line = next(line for line in lines if text in line)
        assert "1/3" not in line.split("\r")[-1], line  # after the bar's line was wiped: a line of its own


# accelerate 1.16 launches a training process with stderr (where the bar is drawn) on a pipe that it relays, and stdout
# straight to the destination: a line on stdout could overtake the bar's clearing on the relayed stderr.
TRAINING_PROCESS_SCRIPT = """
import os, sys
from trl_smol.console import ordered_output
ordered_output("script")
print("same channel:", os.path.samestat(os.fstat(1), os.fstat(2)), "line by line:", sys.stdout.line_buffering)
"""
CLI_PROCESS_SCRIPT = """
import os
from trl_smol.console import SAME_OUTPUT_ENV, ordered_output
environ = {}
ordered_output("cli", environ)
os.write(2, f"marked: {environ.get(SAME_OUTPUT_ENV)}\\n".encode())
"""


def test_trl_sft_marks_whether_its_stdout_and_stderr_reach_the_same_place(tmp_path):
    with open(tmp_path / "log", "w") as log:  # `> log 2>&1`
        subprocess.run([sys.executable, "-c", CLI_PROCESS_SCRIPT], stdout=log, stderr=subprocess.STDOUT, timeout=60)
    place = os.stat(tmp_path / "log")
    assert (tmp_path / "log").read_text() == f"marked: {place.st_dev}:{place.st_ino}\n"
    with open(tmp_path / "out", "w") as out:  # `> out 2> err`: each keeps its own
        result = subprocess.run(
            [sys.executable, "-c", CLI_PROCESS_SCRIPT], stdout=out, stderr=subprocess.PIPE, timeout=60
        )
    assert result.stderr == b"marked: None\n"


def test_a_training_process_writes_stdout_through_the_relayed_stderr_only_where_both_reach_the_same_place(tmp_path):
    (tmp_path / "out").touch()
    place = os.stat(tmp_path / "out")
    for marked in (True, False):  # `trl sft > out 2>&1` (its stdout and stderr reach the file), or not
        env = {key: value for key, value in os.environ.items() if key != SAME_OUTPUT_ENV}
        env.update({SAME_OUTPUT_ENV: f"{place.st_dev}:{place.st_ino}"} if marked else {})
        with open(tmp_path / "out", "w") as out:  # stdout straight to the file, stderr relayed as accelerate does
            result = subprocess.run(
                [sys.executable, "-c", TRAINING_PROCESS_SCRIPT],
                stdout=out,
                stderr=subprocess.PIPE,
                env=env,
                timeout=60,
            )
        relayed, direct = result.stderr.decode(), (tmp_path / "out").read_text()
        if marked:  # one channel, so the order written is the order that arrives; line by line
            assert (relayed, direct) == ("same channel: True line by line: True\n", "")
        else:
            assert (relayed, direct) == ("", "same channel: False line by line: True\n")


# --- the accelerate launch of `trl sft` -----------------------------------------------------------------------------


def accelerate_launch(args, caplog):
    """What `accelerate launch <args> train.py` decides and warns (its own validation), and the command and
    environment its single-process launcher would run."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="accelerate.commands.launch"):
        validated, _, _ = _validate_launch_command(launch_command_parser().parse_args([*args, "train.py"]))
    cmd, env = prepare_simple_launcher_cmd_env(validated)
    return cmd, env, caplog.text


@pytest.fixture
def no_accelerate_config():
    from accelerate.commands.config import default_config_file

    if os.path.isfile(default_config_file) or has_accelerator():
        pytest.skip("accelerate reads a config file here, or counts accelerator devices")


def test_trl_sft_passes_accelerate_the_values_it_would_pick_so_the_launch_is_the_same_and_says_nothing(
    no_accelerate_config, caplog
):
    stock_cmd, stock_env, stock_log = accelerate_launch([], caplog)
    # accelerate up to 1.15 fills in `0` (the device count) on a CPU, 1.16 fills in `1`: either way it warns.
    assert ACCELERATE_BLOCK in stock_log and re.search(r"`--num_processes` was set to a value of `[01]`", stock_log)
    extra = accelerate_launch_arguments([])
    assert extra == [
        "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip
    cmd, env, log = accelerate_launch(extra, caplog)
    assert ACCELERATE_BLOCK not in log
    assert (cmd, env) == (stock_cmd, stock_env)


def test_values_the_user_gave_accelerate_are_kept_and_several_cpu_processes_still_use_the_torchrun_launcher(
    no_accelerate_config,
):
    assert accelerate_launch_arguments(["--num_processes", "2", "--mixed_precision", "bf16"]) == [
        "--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no",
    ]  # fmt: skip
    # An accelerate config file decides everything: nothing is added.
    assert accelerate_launch_arguments(["--config_file", "zero3.yaml"]) == []


# --- the trainer in Python ------------------------------------------------------------------------------------------


def test_with_default_settings_in_python_the_console_is_trls(capsys):
    console = RunConsole(active=False, user_settings=())
    with shown() as inside, console.quiet():
        message = "`gradient_checkpointing_enable` is deprecated"
        warnings.warn_explicit(message, FutureWarning, "m.py", 1, module="transformers.modeling_utils")
    console.step("Loading the model x")
    assert inside != [] and capsys.readouterr().out == ""


def test_a_step_line_is_printed_once_by_the_main_process(capsys, monkeypatch):
    RunConsole(active=True).step("Loading the model x (lora)")
    assert capsys.readouterr().out == "⏳ Loading the model x (lora)…\n"
    monkeypatch.setenv("RANK", "1")
    RunConsole(active=True).step("Loading the model x (lora)")
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(has_accelerator(), reason="the pin_memory warning is about a machine without an accelerator")
def test_smol_sft_trainer_quiets_known_warnings_and_announces_its_steps_only_where_the_plugin_is_active(
    tiny_model_dir, chat_rows, tmp_path, capsys
):
    from datasets import Dataset

    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    def train(rows):
        with shown() as seen:
            args = SmolSFTConfig(
                output_dir=str(tmp_path / str(len(rows[0]))), max_steps=1, per_device_train_batch_size=2, bf16=False,
                report_to="none", save_strategy="no", disable_tqdm=True,
            )  # fmt: skip
            SmolSFTTrainer(model=tiny_model_dir, args=args, train_dataset=Dataset.from_list(rows)).train()
        return seen, capsys.readouterr().out

    # Conversations and a tokenizer without a template: the plugin applies SmolLM3's, so it is active.
    seen, out = train(chat_rows)
    assert "chat_template=smollm3" in out
    assert not any("'pin_memory'" in message for message in seen)
    assert "⏳ Loading the model" in out and "⏳ Preparing the train dataset (16 rows)" in out

    seen, out = train([{"text": f"{i} plus 1 is {i + 1}."} for i in range(16)])
    assert "no features enabled" in out  # a plain run: TRL's console, warnings included
    assert any("'pin_memory'" in message for message in seen) and "⏳" not in out


# --- through `trl sft` ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trl_sft_shows_no_warning_the_user_cannot_act_on_a_line_per_long_step_and_nothing_glued(
    tiny_model_dir, chat_rows, tmp_path
):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in chat_rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        json.dumps(
            {
                "model_name_or_path": str(tiny_model_dir),
                "datasets": [{"path": "json", "data_files": str(data)}],
                "output_dir": str(tmp_path / "out"),
                "max_steps": 2,
                "per_device_train_batch_size": 2,
                "bf16": False,
                "report_to": "none",
                "logging_steps": 1,
                "save_strategy": "steps",
                "save_steps": 1,
                # The tiny model's context is short: its start is cut off, a warning the user can act on.
                "sample_prompts": ["What is 3+1?"],
                "sample_max_new_tokens": 8,
            }
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run(
        [TRL, "sft", "--config", str(recipe)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600,
    )  # fmt: skip
    output = result.stdout
    assert result.returncode == 0, output[-4000:]

    for known in KNOWN_WARNINGS:
        assert not re.search(known.message, output), f"{known.message} was shown:\n{output[-4000:]}"
    assert ACCELERATE_BLOCK not in output
    assert "Sample prompt sample_prompts[0] has" in output  # actionable: shown

    lines = [line.split("\r")[-1] for line in output.split("\n")]  # what a terminal shows of each line
    steps = [line for line in lines if line.startswith("⏳ ")]
    expected = ["Starting trl sft", "Training process started", "Loading the model", "Preparing the train dataset"]
    expected += ["Samples at step 0", "Samples at step 2"]
    assert [next(word for word in expected if word in line) for line in steps] == expected, steps
    assert sum("⏳" in line for line in output.split("\n")) == len(steps)  # none of them glued onto a bar
    warning = next(line for line in lines if "Sample prompt sample_prompts[0] has" in line)
    assert "it/s]" not in warning, warning  # nor the warning


@pytest.mark.slow
def test_trl_sft_ends_with_where_the_model_samples_and_card_are_and_the_python_that_loads_it(shared_trl_sft_run):
    result, output_dir = shared_trl_sft_run.result, str(shared_trl_sft_run.output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.rstrip("\n").split("\n")
    block = lines[next(i for i, line in enumerate(lines) if line.startswith("The run's files are in")) :]
    assert block[0] == f"The run's files are in {output_dir}:"
    assert any(line.strip().startswith("samples.jsonl: ") for line in block)
    assert any(line.strip().startswith("README.md: the model card") for line in block)
    loader = block[-1].strip()
    assert loader.endswith(f".from_pretrained({output_dir!r})") and loader.startswith("from ")
    namespace: dict = {}
    exec(loader, namespace)  # the line as printed loads the model
    assert namespace["model"] is not None
    assert sum(line.startswith("⏳ Starting trl sft") for line in lines) == 1  # each start line once
