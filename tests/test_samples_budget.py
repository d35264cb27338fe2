"""`sample_budget`: the passes before the last step stay within a share of training time by generating the leading
batches of the prompts that fit, and the pass after the last step generates every prompt. The clock is scripted (a
step takes 10 s, a generate call 1 s), so the test reads as the arithmetic it checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_samples import lm_dataset, plain_args, read_samples
from transformers import Trainer, TrainerCallback

from trl_smol.config import SmolSFTConfig
from trl_smol.features.values import RecipeValueError
from trl_smol.samples import SampleGenerationCallback
from trl_smol.samples.budget import SampleBudget

NO_THINK = {"enable_thinking": False}

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class Clock:
    """A stand-in for `time.perf_counter` in the budget and the generator."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class SlowSteps(TrainerCallback):
    """Each optimizer step takes `seconds` on the scripted clock (listed before the sample callback)."""

    def __init__(self, clock: Clock, seconds: float):
        self.clock, self.seconds = clock, seconds

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.now += self.seconds


@pytest.fixture
def clock(monkeypatch, tiny_model):
    clock = Clock()
    monkeypatch.setattr("trl_smol.samples.budget.time", clock)
    monkeypatch.setattr("trl_smol.samples.generation.time", clock)
    generate = tiny_model.generate

    def one_second_generate(*args, **kwargs):
        clock.now += 1.0
        return generate(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "generate", one_second_generate)
    return clock


def train(
    tmp_path, model, tokenizer, clock, *, budget, prompts=40, max_steps=20, every=5, checks=None, at_end=True, **args
):
    eval_dataset = args.pop("eval_dataset", None)
    samples = SampleGenerationCallback(
        [f"Question {i}?" for i in range(prompts)],
        every_n_steps=every,
        max_new_tokens=2,
        batch_size=4,
        chat_template_kwargs=NO_THINK,
        budget=budget,
        checks=checks,
        at_end=at_end,
    )
    trainer = Trainer(
        model=model,
        args=plain_args(tmp_path, max_steps=max_steps, **args),
        train_dataset=lm_dataset(tokenizer),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=[SlowSteps(clock, 10.0), samples],
    )
    trainer.train()
    return trainer, samples


def prompts_by_step(output_dir) -> dict[int, list[str]]:
    steps: dict[int, list[str]] = {}
    for row in read_samples(output_dir):
        steps.setdefault(row["step"], []).append(row["prompt"])
    return steps


def test_passes_take_the_leading_batches_that_fit_and_the_final_pass_takes_every_prompt(
    tmp_path, tiny_model, tiny_tokenizer, clock, capsys
):
    trainer, samples = train(tmp_path, tiny_model, tiny_tokenizer, clock, budget=0.05)

    steps = prompts_by_step(trainer.args.output_dir)
    leading = [f"Question {i}?" for i in range(40)]
    # Step 0 cannot know the step time: one batch of 4, which times a batch (1 s). At step 5, 50 s of training
    # project 200 s; 5% is 10 s, 9 s are left for the 3 passes before the last step: 3 batches each.
    assert steps == {0: leading[:4], 5: leading[:12], 10: leading[:12], 15: leading[:12], 20: leading}
    assert samples.budget.budgeted_seconds == 1 + 3 * 3
    assert samples.budget.used() == pytest.approx(0.05)
    console = capsys.readouterr().out
    assert "Samples at step 0: generating answers to 4 of 40 prompts (one batch, which times a batch" in console
    assert "Samples at step 5: generating answers to 12 of 40 prompts (3 batches fit sample_budget 5%" in console
    assert "Samples at step 20: generating answers to 40 prompts (the final pass, outside sample_budget 5%)" in console
    summary = console.index("Samples before the last step took 5.0% of the training time (sample_budget 5%)")
    assert console.index("Samples at step 20 (10.0s)") < summary  # after the final pass's table


def test_a_pass_is_skipped_when_not_one_batch_fits_and_an_evaluation_still_gets_one(
    tmp_path, tiny_model, tiny_tokenizer, clock, capsys
):
    # 1% of 200 s is 2 s: the start pass's batch leaves 1 s for three passes, a third of a batch each. The
    # evaluation at step 10 needs its pass rate (`eval_samples_pass_rate`): it gets one batch anyway.
    trainer, samples = train(
        tmp_path,
        tiny_model,
        tiny_tokenizer,
        clock,
        budget=0.01,
        checks=["stops"],
        eval_dataset=lm_dataset(tiny_tokenizer, n=2),
        eval_strategy="steps",
        eval_steps=10,
    )
    steps = prompts_by_step(trainer.args.output_dir)
    assert {step: len(prompts) for step, prompts in steps.items()} == {0: 4, 10: 4, 20: 40}
    console = capsys.readouterr().out
    assert "Samples at step 5: skipped, not one batch (1.0s) fits sample_budget 1%" in console
    assert "Samples at step 10: generating answers to 4 of 40 prompts (1 batch for the evaluation" in console
    assert "Samples at step 15: skipped" in console
    # What each evaluation's metrics got (`eval_samples_pass_rate`): a pass rate, not NaN.
    assert sorted(samples.scores) == [0, 10, 20]
    assert all(0 <= scores["pass_rate"] <= 1 for scores in samples.scores.values())


def test_without_a_final_pass_the_pass_at_the_last_step_is_budgeted_too(tmp_path, tiny_model, tiny_tokenizer, clock):
    # sample_at_end off: no pass of every prompt; the budget's 9 s after the start pass go to 4 passes, 2 batches each.
    trainer, samples = train(tmp_path, tiny_model, tiny_tokenizer, clock, budget=0.05, at_end=False)
    steps = prompts_by_step(trainer.args.output_dir)
    assert {step: len(prompts) for step, prompts in steps.items()} == {0: 4, 5: 8, 10: 8, 15: 8, 20: 8}
    assert samples.budget.budgeted_seconds == 1 + 4 * 2


def test_budget_arithmetic():
    budget = SampleBudget(0.05, total=40, batch=4)
    budget.begin(0, now=0.0)
    assert budget.plan(0, 20, 5, now=0.0).count == 4  # nothing timed yet: one batch
    budget.spent(2.0, 4, budgeted=True)  # 2 s a batch
    # 100 s of training at step 10 project 200 s: 10 s allowed, 8 left for passes 10 and 15: 2 batches each.
    assert budget.plan(10, 20, 5, now=102.0).count == 8
    budget.spent(4.0, 8, budgeted=True)
    # Fewer steps done than planned is no reason to grow: the first number of batches is the most.
    assert budget.plan(15, 20, 5, now=156.0).count == 8
    budget.spent(30.0, 40, budgeted=False)  # the final pass: not budgeted, but not training time either
    assert budget.budgeted_seconds == 6.0 and budget.sample_seconds == 36.0
    assert budget.used(now=236.0) == pytest.approx(6.0 / 200.0)
    assert budget.summary(30.0, now=236.0) == (
        "Samples before the last step took 3.0% of the training time (sample_budget 5%); the final pass 30.0s"
    )
    short = SampleBudget(0.05, total=40, batch=4)  # a run too short for even the batch that times a batch
    short.begin(0, now=0.0)
    short.spent(3.0, 4, budgeted=True)
    assert short.summary(9.0, now=23.0).endswith(
        "took 15.0% of the training time (sample_budget 5%); the final pass 9.0s. Over the budget: the first pass's "
        "one batch, which times a batch, took 3.0s"
    )
    resumed = SampleBudget(0.05, total=40, batch=4, batch_seconds=1.0)
    resumed.begin(step=10, now=0.0)  # a resumed run projects from its own steps
    # 5 steps in 50 s project 100 s for the 10 steps of this run: 5 s for the one pass left, 5 batches.
    assert resumed.plan(15, 20, 5, now=50.0).count == 20


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "often"])
def test_a_budget_that_is_not_a_share_fails_before_training(tmp_path, value):
    with pytest.raises(RecipeValueError, match=r"sample_budget=.* is not valid; use a number > 0 and < 1, or null"):
        SmolSFTConfig(output_dir=str(tmp_path), sample_prompts=["Hi"], sample_budget=value)


def test_a_budget_needs_prompts_and_reaches_the_callback(tmp_path):
    with pytest.raises(ValueError, match="sample_budget bounds the sample passes: set `sample_prompts` too"):
        SmolSFTConfig(output_dir=str(tmp_path), sample_budget=0.05)
    args = SmolSFTConfig(output_dir=str(tmp_path), sample_prompts=["Hi"], sample_budget=0.05)
    assert SampleGenerationCallback.from_args(args).budget_share == 0.05
    with pytest.raises(ValueError, match="share of training time"):
        SampleGenerationCallback(["Hi"], budget=2)


def test_without_a_budget_every_pass_generates_every_prompt(tmp_path, tiny_model, tiny_tokenizer, clock):
    trainer, samples = train(tmp_path, tiny_model, tiny_tokenizer, clock, budget=None, prompts=6, max_steps=10)
    assert {step: len(prompts) for step, prompts in prompts_by_step(trainer.args.output_dir).items()} == {
        0: 6,
        5: 6,
        10: 6,
    }
    assert samples.budget is None


@pytest.mark.slow
def test_two_processes_follow_the_main_process_plan_and_write_each_prompt_once(tmp_path, tiny_model_dir):
    script = Path(__file__).with_name("samples_ddp_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)]
    arguments = [tiny_model_dir, str(tmp_path / "ddp"), "budget"]
    result = subprocess.run([*command, *arguments], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    # A batch is a prompt on each of the two ranks. Step 0: one batch (1 s). Step 2: 20 s of training project 40 s,
    # 10% is 4 s, 3 s left for the one pass before the last step: 3 batches. Step 4: every prompt, each once.
    questions = [f"Question {i}?" for i in range(10)]
    assert prompts_by_step(tmp_path / "ddp") == {0: questions[:2], 2: questions[:6], 4: questions}
