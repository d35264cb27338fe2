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


# --- one definition of a pass's figures --------------------------------------------------------------------------


def test_the_trackers_the_card_and_the_command_show_the_same_figures(tmp_path, monkeypatch, capsys):
    """Rows scored as in training (a built-in check, a float score, a prompt without checks, a check that raises),
    written by the callback's writer: the figures the trackers log (`summarize`) are those the model card and
    `trl-smol samples` read back from `samples.jsonl`."""
    from sample_rows import sample_row

    from trl_smol import commands as cli
    from trl_smol.commands.samples import read_run
    from trl_smol.model_card import sample_passes, samples_section
    from trl_smol.samples.checks import SampleCheck, keyed, parse_checks, score, summarize
    from trl_smol.samples.outputs import SampleOutputs
    from trl_smol.samples.scores import pass_scores

    def broken(prompt_row, sample):
        raise ZeroDivisionError("division by zero")

    judged = {0: {"a": 0.75, "b": 0.5, "d": 0.25}, 2: {"a": 1.0, "b": 0.5, "d": 0.5}}  # a score passes at 0.5
    judge = SampleCheck("judge", {"name": "judge"}, lambda row, sample: judged[sample["step"]][sample["prompt"]])
    crash = SampleCheck("broken", {"name": "broken"}, broken)
    prompts = {
        "a": keyed([*parse_checks(["stops"]), judge, crash]),  # its check that raises fails it
        "b": keyed([*parse_checks(["stops"]), judge]),
        "c": {},  # no checks: not scored, in no check's mean
        "d": keyed([*parse_checks(["stops"]), judge]),
    }
    outputs, logged = SampleOutputs(tmp_path), {}
    for step in (0, 2):
        rows = []
        for prompt, checks in prompts.items():
            sample = sample_row(step, prompt, stopped=prompt != "d" or step == 2, tokens=len(rows) + 4)
            sample["checks"], sample["passed"] = score(checks, {"prompt": prompt}, sample, "prompts.jsonl")
            rows.append(sample)
        outputs.write(rows)
        logged[step] = summarize(rows)  # what the callback logs as samples/<key> and eval_samples_<key>

    assert [row["checks"]["broken"] for row in outputs.history if "broken" in row["checks"]] == [False, False]
    assert logged[0] == {"pass_rate": 1 / 3, "stops": 2 / 3, "judge": 0.5, "broken": 0.0}
    assert logged[2] == {"pass_rate": 2 / 3, "stops": 1.0, "judge": 2 / 3, "broken": 0.0}
    card_passes, command_passes = sample_passes(tmp_path), read_run(tmp_path).passes
    for step in (0, 2):
        assert pass_scores(card_passes[step]).metrics() == logged[step]
        assert pass_scores(command_passes[step]).metrics() == logged[step]

    lines = samples_section(tmp_path)
    assert "Pass rate: 33% (1 of 3) at step 0, 67% (2 of 3) at step 2." in lines
    for name in ("stops", "judge", "broken"):
        assert f"- `{name}`: {logged[0][name]:.0%} → {logged[2][name]:.0%}" in lines

    monkeypatch.setenv("COLUMNS", "320")
    assert cli.main(["samples", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for step, counts in ((0, "(1/3)"), (2, "(2/3)")):
        (line,) = [line for line in out.splitlines() if line.split()[:1] == [str(step)]]
        rates = [f"{logged[step][name]:.0%}" for name in ("stops", "judge", "broken")]
        assert line.split()[2:7] == [f"{logged[step]['pass_rate']:.0%}", counts, *rates]  # after step, samples
