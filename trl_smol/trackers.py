"""Trackio reporting that logs into the run the user started, as the Hugging Face course does.

```python
import trackio as wandb
from trl import SFTConfig, SFTTrainer

wandb.init(project="smollm3-sft", name="run-1")
trainer = SFTTrainer(..., args=SFTConfig(..., report_to="trackio"))
trainer.train()
wandb.finish()
```

transformers' stock `TrackioCallback` calls `trackio.init(project=args.project, ...)` itself, which finishes the
user's run and starts one in the project `"huggingface"`, then calls `trackio.finish()` at the end of training, so the
user's own `finish()` raises. [`TrackioUserRunCallback`] adopts the user's run instead and leaves finishing it to them.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.integrations.integration_utils import TrackioCallback
from transformers.trainer_callback import CallbackHandler
from transformers.utils import logging

logger = logging.get_logger(__name__)


class TrackioUserRunCallback(TrackioCallback):
    """
    A [`TrainerCallback`] that logs metrics to Trackio, into the run the user started with `trackio.init()` if there
    is one.

    When a Trackio run is current at setup, it is adopted: the training arguments and model config are added to its
    config, metrics are logged to it, and it is left running at the end of training (no `trackio.finish()`, no static
    Space snapshot), since the user's own `trackio.finish()` ends it. Without a current run, it behaves exactly like
    [`~integrations.TrackioCallback`]: it starts a run from `project` / `run_name` and finishes it after training.
    """

    def __init__(self, run_id: str | None = None):
        super().__init__()
        self._user_run = False
        self.run_id = run_id  # the plugin's run id, added to the run's config as `trl_smol/run`

    def setup(self, args: TrainingArguments, state: TrainerState, model: Any, **kwargs):
        """
        Adopt the current Trackio run if the user started one, else set up a run as [`~integrations.TrackioCallback`]
        does.
        """
        run = self._trackio.context_vars.current_run.get()
        if run is None or not state.is_world_process_zero:
            self._user_run = False
            super().setup(args, state, model, **kwargs)
            if self.run_id and state.is_world_process_zero:
                self._trackio.config["trl_smol/run"] = self.run_id
            return

        # Same config as the parent adds, minus `trackio.init()`: calling it would finish the user's run.
        combined_dict = {**args.to_dict()}
        if hasattr(model, "config") and model.config is not None:
            model_config = model.config if isinstance(model.config, dict) else model.config.to_dict()
            combined_dict = {**model_config, **combined_dict}
        if hasattr(model, "peft_config") and model.peft_config is not None:
            combined_dict = {"peft_config": model.peft_config, **combined_dict}
        # Trackio's run config is a plain dict: wandb's `allow_val_change=True` would only add a stray key to it.
        # Trackio stores the config with the run's first logged step, so this lands if the user has not logged yet.
        run.config.update(combined_dict)
        if self.run_id:
            run.config["trl_smol/run"] = self.run_id
        try:
            run.config["model/num_parameters"] = model.num_parameters()
        except AttributeError:
            logger.info("Could not log the number of model parameters in Trackio due to an AttributeError.")

        self._space_id = self._trackio.context_vars.current_space_id.get()
        self._user_run = True
        self._initialized = True

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        processing_class: Any = None,
        **kwargs,
    ):
        if not self._user_run:
            super().on_train_end(args, state, control, model=model, processing_class=processing_class, **kwargs)
            return
        # The user's run goes on after training (more logging, evaluation): their `trackio.finish()` ends it, and a
        # static snapshot of its Space now would miss what comes next. The next `train()` sets up afresh.
        self._user_run = False
        self._initialized = False


def replace_trackio_callback(callback_handler: CallbackHandler, run_id: str | None = None) -> bool:
    """
    Swap each stock [`~integrations.TrackioCallback`] of `callback_handler` (exactly that class, not a subclass) for a
    [`TrackioUserRunCallback`] at the same position, so callback order is unchanged.

    Returns:
        `bool`: Whether a callback was replaced.
    """
    replaced = False
    for index, callback in enumerate(callback_handler.callbacks):
        if type(callback) is TrackioCallback:
            callback_handler.callbacks[index] = TrackioUserRunCallback(run_id)
            replaced = True
    return replaced
