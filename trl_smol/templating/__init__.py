"""SmolLM3 chat templating: the template (`smollm3.jinja`), when it applies, and rendering examples for display.

```python
from trl_smol.templating import SMOLLM3_CHAT_TEMPLATE, apply_smollm3_template

apply_smollm3_template(tokenizer)   # template + a pad token distinct from the stop token
```
"""

from .choice import CHAT_TEMPLATE_MODES, smollm3_template_reason
from .template import (
    END_OF_TURN,
    SMOLLM3_CHAT_TEMPLATE,
    SMOLLM3_TEMPLATE_KWARGS,
    START_OF_TURN,
    apply_smollm3_template,
    canonical_tool_calls,
    is_smollm3_template,
)

__all__ = [
    "CHAT_TEMPLATE_MODES",
    "END_OF_TURN",
    "SMOLLM3_CHAT_TEMPLATE",
    "SMOLLM3_TEMPLATE_KWARGS",
    "START_OF_TURN",
    "apply_smollm3_template",
    "canonical_tool_calls",
    "is_smollm3_template",
    "smollm3_template_reason",
]
