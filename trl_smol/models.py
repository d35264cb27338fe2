"""Model names the plugin resolves itself: the demo identifier, and hub ids checked offline before loading.

```python
from trl_smol.models import resolve_model_name

resolve_model_name("trl-smol/SmolLM3-demo-135M")     # the local demo checkpoint, built once
resolve_model_name("HuggingFaceTB/SmolLM3-3B-Base")  # as given when cached or online; else one clear error
```
"""

from __future__ import annotations

import os
from typing import Any

from .demo.model import DEMO_MODEL_ID, materialize_demo_model


class ModelResolutionError(OSError):
    """A model name that can be resolved neither locally, nor from the plugin's cache, nor (offline) from the hub."""


def is_plugin_model(name: str) -> bool:
    return name == DEMO_MODEL_ID


def resolve_model_name(name: str) -> str:
    """Map a model name to what `from_pretrained` can load here.

    The demo identifier becomes its local checkpoint (built on first use); a local directory stays as it is; a hub id
    stays as it is when it is in the local hub cache or the hub is reachable, and otherwise raises
    [`ModelResolutionError`] with one paragraph that says what was tried.
    """
    if is_plugin_model(name):
        return str(materialize_demo_model())
    if os.path.isdir(name):
        return name
    return _check_hub_id(name)


def _check_hub_id(name: str) -> str:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if not HF_HUB_OFFLINE:
        return name  # online: let transformers download, and report hub errors itself
    try:
        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # an invalid repo id, for example a local path that does not exist
        cached = None
    if isinstance(cached, str):
        return name
    raise ModelResolutionError(
        f"Cannot resolve the model `{name}` offline. It is not a local directory (checked {os.path.abspath(name)}), "
        f"not a model this plugin builds itself (only `{DEMO_MODEL_ID}`), and its config.json is not in the "
        f"Hugging Face cache, while HF_HUB_OFFLINE is set. Download it once with network access "
        f"(`hf download {name}`), point `model_name_or_path` to a local copy, or unset HF_HUB_OFFLINE."
    )


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
