"""Model names the plugin resolves itself: the demo identifier, and hub ids checked before loading.

```python
from trl_smol.models import resolve_model_name

resolve_model_name("trl-smol/SmolLM3-demo-135M")     # the local demo checkpoint, built once
resolve_model_name("HuggingFaceTB/SmolLM3-3B-Base")  # as given when cached or on the Hub; else one clear error
```
"""

from __future__ import annotations

import os
from typing import Any

from .demo.model import DEMO_MODEL_ID, materialize_demo_model
from .hub import HubAccessError, check_hub_repo


class ModelResolutionError(HubAccessError):
    """A model name that can be resolved neither locally, nor from the plugin's cache, nor from the Hub (offline:
    from its cache); the message names the model and what to do."""


def is_plugin_model(name: str) -> bool:
    return name == DEMO_MODEL_ID


def resolve_model_name(name: str, *, revision: str | None = None) -> str:
    """Map a model name to what `from_pretrained` can load here.

    The demo identifier becomes its local checkpoint (built on first use); a local directory stays as it is; a hub id
    stays as it is when it is in the local hub cache or the Hub knows it, and otherwise raises
    [`ModelResolutionError`] within seconds, naming the model and what to do ([`trl_smol.hub.check_hub_repo`]).
    """
    if is_plugin_model(name):
        return str(materialize_demo_model())
    if os.path.isdir(name):
        return name
    try:
        check_hub_repo(name, "model", setting="model_name_or_path", revision=revision)
    except HubAccessError as error:
        raise ModelResolutionError(str(error)) from None
    return name


def model_type_of(model: Any, *, trust_remote_code: bool = False) -> str | None:
    """`config.model_type` of a loaded model (a PEFT model's base model too) or of a name or path; `None` when the
    config cannot be read (the caller then decides from the name)."""
    if not isinstance(model, (str, os.PathLike)):
        return getattr(getattr(model, "config", None), "model_type", None)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(os.fspath(model), trust_remote_code=trust_remote_code).model_type
    except Exception:  # unreadable or unreachable config: TRL reports it when it loads the model
        return None
