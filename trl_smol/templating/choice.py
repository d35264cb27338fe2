"""When the plugin puts its SmolLM3 chat template on a tokenizer (`smol_chat_template`).

```python
>>> smollm3_template_reason(tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "auto")
'SmolLM3 Base checkpoint'
```
"""

from __future__ import annotations

import re
from typing import Any

from ..config import CHAT_TEMPLATE_MODES

_BASE_CHECKPOINT = re.compile(r"smollm3.*base", re.IGNORECASE)


def smollm3_template_reason(tokenizer: Any, model_name_or_path: str | None, mode: str) -> str | None:
    """Why the SmolLM3 template should be applied to `tokenizer`, or `None` to keep the tokenizer's own.

    `mode` is `SmolSFTConfig.smol_chat_template`: `"smollm3"` always applies it, `"keep"` never does, `"auto"` applies
    it when the tokenizer has no chat template or the model is a SmolLM3 *Base* checkpoint.

    ```python
    >>> smollm3_template_reason(tokenizer, "HuggingFaceTB/SmolLM3-3B-Base", "auto")
    'SmolLM3 Base checkpoint'
    ```
    """
    if mode == "keep":
        return None
    if mode == "smollm3":
        return "smol_chat_template=smollm3"
    if mode != "auto":
        raise ValueError(f"smol_chat_template={mode!r} is not valid; use one of {', '.join(CHAT_TEMPLATE_MODES)}.")
    if not getattr(tokenizer, "chat_template", None):
        return "tokenizer had no chat template"
    if model_name_or_path and _BASE_CHECKPOINT.search(str(model_name_or_path)):
        return "SmolLM3 Base checkpoint"
    return None
