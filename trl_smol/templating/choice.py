"""When the plugin puts its SmolLM3 chat template on a tokenizer (`smol_chat_template`).

```python
>>> smollm3_template_reason(tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "auto")
'SmolLM3 Base checkpoint'
```
"""

from __future__ import annotations

import re
from typing import Any

# Values of `smol_chat_template`: apply the SmolLM3 template when a SmolLM3 model needs it, always, or never.
CHAT_TEMPLATE_MODES = ("auto", "smollm3", "keep")

_BASE_CHECKPOINT = re.compile(r"smollm3.*base", re.IGNORECASE)


def smollm3_template_reason(
    tokenizer: Any,
    model_name_or_path: str | None,
    mode: str,
    *,
    model_type: str | None = None,
    chat_template_path: str | None = None,
    assistant_only_loss: bool = False,
) -> str | None:
    """Why the SmolLM3 template should be put on `tokenizer`, or `None` to keep what TRL would use.

    `mode` is `SmolSFTConfig.smol_chat_template`. `"keep"` never applies it and `"smollm3"` always does (together with
    TRL's `chat_template_path` it is an error: both choose the template). `"auto"` applies it only to a SmolLM3 model
    (`model_type == "smollm3"`; `None` reads it from the model name) and never over a `chat_template_path`:

    - its tokenizer has no chat template (stock TRL would stop: "Cannot use chat template functions");
    - it is a SmolLM3 *Base* checkpoint, whose tokenizer does not carry the instruct format;
    - `assistant_only_loss` is on and its template cannot mark assistant turns (TRL would stop: "not
      training-compatible").

    ```python
    >>> smollm3_template_reason(tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "auto", model_type="smollm3")
    'SmolLM3 Base checkpoint'
    ```
    """
    if mode == "keep":
        return None
    if mode == "smollm3":
        if chat_template_path:
            raise ValueError(
                f"`smol_chat_template: smollm3` and `chat_template_path: {chat_template_path}` both choose the chat "
                "template. Remove one of them."
            )
        return "smol_chat_template=smollm3"
    if mode != "auto":
        raise ValueError(f"smol_chat_template={mode!r} is not valid; use one of {', '.join(CHAT_TEMPLATE_MODES)}.")
    if model_type is None:
        model_type = "smollm3" if re.search("smollm3", str(model_name_or_path or ""), re.IGNORECASE) else None
    if chat_template_path or model_type != "smollm3":
        return None
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return "SmolLM3 model whose tokenizer has no chat template"
    if model_name_or_path and _BASE_CHECKPOINT.search(str(model_name_or_path)):
        return "SmolLM3 Base checkpoint"
    if assistant_only_loss and not can_mask_assistant_turns(tokenizer):
        return "its tokenizer's template cannot mark assistant turns, and assistant_only_loss is on"
    return None


def can_mask_assistant_turns(tokenizer: Any) -> bool:
    """Whether TRL can train `tokenizer`'s template with `assistant_only_loss`: it has `{% generation %}` markers, or
    TRL knows how to add them (`trl.chat_template_utils.get_training_chat_template`)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return False
    return True
