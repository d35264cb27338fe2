"""`TrackioUserRunCallback`: the course's `trackio.init()` / `trainer.train()` / `trackio.finish()` flow, offline."""

import sys
from pathlib import Path

import pytest
import torch
import trackio
from trackio.sqlite_storage import SQLiteStorage  # trackio's public `Api` reads runs and configs, not metrics
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments
from transformers.integrations.integration_utils import TrackioCallback
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, PrinterCallback

from trl_smol.trackers import TrackioUserRunCallback, replace_trackio_callback


@pytest.fixture
def trackio_dir(tmp_path, monkeypatch):
    """A fresh Trackio store in `tmp_path`, and no current run before or after the test."""
    store = tmp_path / "trackio"
    monkeypatch.setenv("TRACKIO_DIR", str(store))
    # Trackio reads TRACKIO_DIR once, at import, and several modules bind the resulting paths: redirect them all.
    for name, module in list(sys.modules.items()):
        if name == "trackio" or name.startswith("trackio."):
            for attr, path in (
                ("TRACKIO_DIR", store),
                ("MEDIA_DIR", store / "media"),
                ("ARTIFACTS_DIR", store / "artifacts"),
            ):
                if isinstance(getattr(module, attr, None), Path):
                    monkeypatch.setattr(module, attr, path)
    assert trackio.context_vars.current_run.get() is None
    yield store
    if trackio.context_vars.current_run.get() is not None:
        trackio.finish()


def _trainer(output_dir: Path, **kwargs) -> Trainer:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (8, 8))]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=3,
        logging_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="no",
        report_to="trackio",
        use_cpu=True,
        disable_tqdm=True,
        **kwargs,
    )
    trainer = Trainer(model=LlamaForCausalLM(config), args=args, train_dataset=rows)
    assert replace_trackio_callback(trainer.callback_handler, run_id="20261129-120000-abcd")
    return trainer


def _logged_losses(trainer: Trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _stored_losses(project: str, run: str) -> list[float]:
    return [row["value"] for row in SQLiteStorage.get_metric_values(project, run, "train/loss")]


def test_course_flow_logs_into_the_users_run(trackio_dir, tmp_path):
    trackio.init(project="smollm3-sft", name="run-1")
    trainer = _trainer(tmp_path / "out")
    trainer.train()
    # The user's run is still the current one after training, and the user's finish() ends it.
    assert trackio.context_vars.current_run.get().name == "run-1"
    trackio.finish()

    losses = _logged_losses(trainer)
    assert len(losses) == 3
    assert _stored_losses("smollm3-sft", "run-1") == pytest.approx(losses)
    runs = list(trackio.Api().runs("smollm3-sft"))
    assert [run.name for run in runs] == ["run-1"]
    config = runs[0].config
    assert config["max_steps"] == 3 and config["hidden_size"] == 16
    assert config["model/num_parameters"] == trainer.model.num_parameters()
    assert config["trl_smol/run"] == "20261129-120000-abcd"  # the plugin's run id, as in samples.jsonl
    # Nothing went to the stock callback's default project.
    assert not SQLiteStorage.get_project_db_path("huggingface").exists()
    assert sorted(path.name for path in trackio_dir.glob("*.db")) == ["smollm3-sft.db"]


def test_without_a_user_run_it_starts_and_finishes_its_own(trackio_dir, tmp_path):
    trainer = _trainer(tmp_path / "out", project="callback-project", run_name="callback-run")
    trainer.train()

    assert trackio.context_vars.current_run.get() is None
    with pytest.raises(RuntimeError, match="Call trackio.init"):
        trackio.finish()
    losses = _logged_losses(trainer)
    assert len(losses) == 3
    assert _stored_losses("callback-project", "callback-run") == pytest.approx(losses)


def test_replace_trackio_callback_keeps_the_position():
    class CustomTrackio(TrackioCallback):
        pass

    custom = CustomTrackio()
    handler = CallbackHandler([DefaultFlowCallback, TrackioCallback, PrinterCallback, custom], None, None, None, None)
    assert replace_trackio_callback(handler)
    assert [type(cb) for cb in handler.callbacks] == [
        DefaultFlowCallback,
        TrackioUserRunCallback,
        PrinterCallback,
        CustomTrackio,
    ]
    assert handler.callbacks[3] is custom  # a subclass is someone's own choice: left alone

    assert not replace_trackio_callback(handler)  # already replaced
    handler = CallbackHandler([DefaultFlowCallback, PrinterCallback], None, None, None, None)
    assert not replace_trackio_callback(handler)
    assert [type(cb) for cb in handler.callbacks] == [DefaultFlowCallback, PrinterCallback]
