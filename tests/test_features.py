"""The plugin's features: one module each, one interface, typed decisions, and one place that registers them.

A feature owns its config fields, decides from the run context into a `Decision` whose source is an enum, and the
trainer, banner, preset table and model card read those decisions. Registering a new feature is enough for all of
them to see it.
"""

import ast
import dataclasses
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import TrainerCallback

import trl_smol.plan
from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.features import ARGUMENTS, FEATURES, Decision, Feature, PresetLever, RunContext, Source
from trl_smol.memory.preset_result import RowStatus
from trl_smol.plan import plan_run
from trl_smol.testing import save_tiny_smollm3

PACKAGE = Path(__file__).resolve().parents[1] / "trl_smol"
ROW = {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_smollm3(tmp_path_factory.mktemp("tiny"), chat_template=SMOLLM3_CHAT_TEMPLATE)


def test_each_feature_owns_its_fields_and_the_config_has_them_all():
    owned = [f.name for arguments in ARGUMENTS for f in dataclasses.fields(arguments)]
    assert len(owned) == len(set(owned)), "two features own the same field"
    config_fields = {f.name for f in dataclasses.fields(SmolSFTConfig)}
    assert set(owned) <= config_fields
    assert dataclasses.fields(SmolSFTConfig)[0].name == "output_dir"  # TRL's first positional argument stays first
    names = [feature.name for feature in FEATURES]
    assert len(names) == len(set(names))


def test_every_feature_decides_with_a_typed_source(tmp_path):
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none")
    plan = plan_run(args)
    assert [decision.feature for decision in plan.decisions] == [feature.name for feature in FEATURES]
    assert all(isinstance(decision.source, Source) for decision in plan.decisions)
    # Plugin settings off: nothing beyond TRL is on (the defaults stay TRL's).
    assert plan.features() == {} and "no features enabled" in plan.banner()
    assert plan.preset is None and plan.preset_rows() == []


def test_no_decision_is_read_from_a_message():
    """A reason or a table row's status is for display: code never compares it with a string."""
    offending = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            texts = any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in sides)
            messages = any(isinstance(side, ast.Attribute) and side.attr in ("reason", "status") for side in sides)
            if texts and messages:
                offending.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offending == []


class Greeting(TrainerCallback):
    def __init__(self):
        self.began = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = True


class Greeter(PresetLever):
    """A feature written for this test: one module's worth of code, registered by one line."""

    name = "greeter"
    setting = "logging_first_step"  # a TRL field stands in for the feature's own
    banner_key = "greeting"

    def proposal(self, context: RunContext):
        return True, "say hello at the first step"

    def problem(self, context: RunContext, value):
        return "the dataset has images" if context.vision else None

    def describe(self, decision: Decision):
        return f"hello ({decision.reason})" if decision.on else None

    def callbacks(self, decision, plan, args, prepared=None):
        return [Greeting()] if decision.on else []

    def install(self, decision, trainer):
        return "installed" if decision.on else None


def test_a_new_feature_is_one_module_and_its_registration(monkeypatch, model_dir, tmp_path, capsys):
    monkeypatch.setattr(trl_smol.plan, "FEATURES", (*FEATURES, Greeter()))
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu", max_steps=1)
    trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list([ROW]))
    decision = trainer.run_plan["greeter"]
    assert decision.source is Source.PRESET and decision.reason == "memory preset cpu" and args.logging_first_step
    assert "greeting=hello (memory preset cpu)" in capsys.readouterr().out  # the banner
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "logging_first_step"]
    assert row.status is RowStatus.CHANGED and row.reason == "say hello at the first step"
    assert trainer.installed["greeter"] == "installed"
    assert any(isinstance(callback, Greeting) for callback in trainer.callback_handler.callbacks)


def test_the_base_interface_does_nothing_by_default():
    class Quiet(Feature):
        name = "quiet"

        def decide(self, context):
            return Decision(self.name, Source.DEFAULT, False)

    quiet, decision = Quiet(), Decision("quiet", Source.DEFAULT, False)
    assert quiet.describe(decision) is None and quiet.callbacks(decision, None, None) == []
    assert quiet.prepare(decision, None, None, None) is None and quiet.install(decision, None) is None
