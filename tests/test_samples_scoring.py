"""Scored samples in training: check results in `samples.jsonl` and on the console, pass rates to trackio over steps,
and pass rates in evaluations so that `metric_for_best_model: eval_samples_pass_rate` picks the checkpoint. The demo
recipe's pass rate rising through the stock `trl sft`, read back from trackio, is tested on the demo's own run
(tests/test_demo.py), and the pass rates under two processes in tests/test_samples.py."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from test_samples import lm_dataset, plain_args, read_samples
from transformers import Trainer

from trl_smol.samples import SampleGenerationCallback, SamplePromptError

NO_THINK = {"enable_thinking": False}  # the think-mode system prompt alone exceeds the tiny model's context
ALWAYS = {"name": "regex", "pattern": "^"}  # matches any answer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_rows_carry_results_the_console_marks_each_sample_and_trackio_plots_pass_rates(
    tmp_path, tiny_model, tiny_tokenizer, monkeypatch, capsys
):
    from trackio.sqlite_storage import SQLiteStorage

    monkeypatch.setattr("trackio.sqlite_storage.TRACKIO_DIR", tmp_path / "trackio")
    prompts = ["What is 7 plus 5?", {"prompt": "Name a colour.", "checks": [ALWAYS]}, {"prompt": "Hi", "checks": []}]
    samples = SampleGenerationCallback(
        prompts, every_n_steps=2, max_new_tokens=3, chat_template_kwargs=NO_THINK, checks=["stops"]
    )
    trainer = Trainer(
        model=tiny_model,
        args=plain_args(tmp_path, report_to="trackio", project="trl-smol-scores", run_name="run"),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()

    rows = read_samples(trainer.args.output_dir)
    assert [row["step"] for row in rows] == [0, 0, 0, 2, 2, 2, 4, 4, 4]
    for row in rows:
        expected = (
            {"stops": row["stopped"]}
            if row["prompt"] != "Name a colour."
            else {"regex": True, "stops": row["stopped"]}
        )
        assert row["checks"] == expected and row["passed"] is row["stopped"]
    # Per pass: the share of rows that passed, and each check's mean over the rows that carry it.
    for step in (0, 2, 4):
        stopped = [row["stopped"] for row in rows if row["step"] == step]
        assert samples.scores[step] == {"pass_rate": sum(stopped) / 3, "stops": sum(stopped) / 3, "regex": 1.0}

    console = capsys.readouterr().out
    assert console.count("FAIL: stops") == sum(not row["stopped"] for row in rows)
    last = samples.scores[4]
    assert f"pass rate {last['pass_rate']:.0%} (stops {last['stops']:.0%}, regex 100%)" in console

    logs = [log for log in SQLiteStorage.get_logs("trl-smol-scores", "run") if "samples/pass_rate" in log]
    assert [log["train/global_step"] for log in logs] == [0, 2, 4]
    assert [log["samples/pass_rate"] for log in logs] == [samples.scores[step]["pass_rate"] for step in (0, 2, 4)]
    assert all(log["samples/regex"] == 1.0 for log in logs)


def test_prompts_without_checks_write_null_and_log_no_rates(tmp_path, tiny_model, tiny_tokenizer):
    samples = SampleGenerationCallback(["Hi"], every_n_steps=0, max_new_tokens=2, chat_template_kwargs=NO_THINK)
    trainer = Trainer(
        model=tiny_model,
        args=plain_args(tmp_path, max_steps=1),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()
    assert [(row["checks"], row["passed"]) for row in read_samples(trainer.args.output_dir)] == [({}, None)] * 2
    assert samples.scores == {}


# --- selection: eval_samples_pass_rate as metric_for_best_model --------------------------------------------------

# A judge that scores the passes in a fixed order, so the best checkpoint is known in advance: passes at steps 0
# (the baseline), 2, 4 and 6 (one prompt each); the evaluations at 2, 4 and 6 see scores 0.0, 1.0 and 0.25, so pass
# rates 0, 1 and 0 (a score passes at 0.5).
SCRIPTED_CHECK = """
SCORES = [0.0, 0.0, 1.0, 0.25]
calls = []


def scripted(prompt_row, completion):
    calls.append(completion)
    return SCORES[len(calls) - 1]
"""


@pytest.fixture
def scripted_check(tmp_path, monkeypatch):
    """An installed package (module and .dist-info) that registers `scripted` under `trl_smol.sample_checks`."""
    folder = tmp_path / "site"
    info = folder / "scripted_check-0.dist-info"
    info.mkdir(parents=True)
    (folder / "scripted_check.py").write_text(SCRIPTED_CHECK)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scripted-check\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[trl_smol.sample_checks]\nscripted = scripted_check:scripted\n")
    monkeypatch.syspath_prepend(str(folder))
    yield
    sys.modules.pop("scripted_check", None)


def test_metric_for_best_model_eval_samples_pass_rate_picks_the_checkpoint(
    tmp_path, tiny_model, tiny_tokenizer, scripted_check
):
    samples = SampleGenerationCallback(
        [{"prompt": "Hi", "checks": ["scripted"]}], every_n_steps=0, max_new_tokens=2, chat_template_kwargs=NO_THINK
    )
    args = plain_args(
        tmp_path,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_samples_pass_rate",
    )
    trainer = Trainer(
        model=tiny_model,
        args=args,
        train_dataset=lm_dataset(tiny_tokenizer),
        eval_dataset=lm_dataset(tiny_tokenizer, n=2),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()

    # Each evaluation ran a pass at its step (none was due: every_n_steps=0); the final pass reused step 6's.
    assert [row["step"] for row in read_samples(args.output_dir)] == [0, 2, 4, 6]
    assert trainer.state.best_metric == 1.0
    assert trainer.state.best_model_checkpoint == str(Path(args.output_dir) / "checkpoint-4")
    best = load_file(Path(args.output_dir) / "checkpoint-4" / "model.safetensors")
    last = load_file(Path(args.output_dir) / "checkpoint-6" / "model.safetensors")
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(best[name], last[name])
    assert torch.equal(trainer.model.state_dict()[name], best[name])  # loaded at the end
    metrics = trainer.evaluate()  # at step 6, whose pass ran: no new pass, no new row
    assert (metrics["eval_samples_pass_rate"], metrics["eval_samples_scripted"]) == (0.0, 0.25)
    assert len(read_samples(args.output_dir)) == 4


def test_a_sample_metric_the_checks_do_not_give_fails_before_training():
    selecting = SimpleNamespace(metric_for_best_model="eval_samples_pass_rate")
    with pytest.raises(SamplePromptError, match=r"no sample prompt has checks: add `checks` to the prompts"):
        SampleGenerationCallback(["Hi"]).check_selection(selecting)
    with_checks = SampleGenerationCallback(["Hi"], checks=["stops", "think"])
    assert with_checks.check_selection(selecting) is with_checks
    assert with_checks.check_selection(SimpleNamespace(metric_for_best_model="samples_think")) is with_checks
    with pytest.raises(SamplePromptError, match=r"eval_samples_pass_rate, eval_samples_stops, eval_samples_think\.$"):
        with_checks.check_selection(SimpleNamespace(metric_for_best_model="eval_samples_regex"))


def test_the_recipe_keys_reach_the_callback_and_checks_need_prompts(tmp_path):
    from trl_smol import SmolSFTConfig

    args = SmolSFTConfig(
        output_dir=str(tmp_path), bf16=False, sample_prompts=["Hi"], sample_checks=["stops", {"name": "think"}]
    )
    assert list(SampleGenerationCallback.from_args(args).prompts[0].checks) == ["stops", "think"]
    with pytest.raises(ValueError, match=r"sample_checks are scored on sample prompts: set `sample_prompts` too"):
        SmolSFTConfig(output_dir=str(tmp_path), bf16=False, sample_checks=["stops"])


def test_a_dataset_goes_to_the_callback_not_to_the_config(tmp_path):
    from trl_smol import SmolSFTConfig

    heldout = Dataset.from_list([{"prompt": "Hi", "checks": [{"name": "stops"}]}])
    assert list(SampleGenerationCallback(heldout).prompts[0].checks) == ["stops"]
    with pytest.raises(ValueError, match=r"sample_prompts cannot be a datasets.Dataset: write it to a file"):
        SmolSFTConfig(output_dir=str(tmp_path), bf16=False, sample_prompts=heldout)
